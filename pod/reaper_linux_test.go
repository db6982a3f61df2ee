//go:build linux

package pod

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// testReaper is a reaper like the shim's: one SIGCHLD loop doing
// wait4(-1, WNOHANG) for every child, handing the exits of commands started
// through it back to their Wait.
type testReaper struct {
	mu      sync.Mutex             // guards started and waiting; held across fork so no exit beats its registration
	started map[int]chan int       // by pid, until reaped
	waiting map[*exec.Cmd]chan int // by command, until Wait takes it (maybe after the exit)
}

func newTestReaper() *testReaper {
	r := &testReaper{started: make(map[int]chan int), waiting: make(map[*exec.Cmd]chan int)}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r
}

func (r *testReaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue // a traced child's stop
		}
		status := ws.ExitStatus()
		if ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
		r.mu.Lock()
		if ch, ok := r.started[pid]; ok {
			delete(r.started, pid)
			ch <- status
		}
		r.mu.Unlock()
	}
}

func (r *testReaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	ch := make(chan int, 1)
	r.started[cmd.Process.Pid] = ch
	r.waiting[cmd] = ch
	return nil
}

func (r *testReaper) Wait(cmd *exec.Cmd) (int, error) {
	r.mu.Lock()
	ch, ok := r.waiting[cmd]
	delete(r.waiting, cmd)
	r.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("pid %d not started here", cmd.Process.Pid)
	}
	status := <-ch
	cmd.Wait() // reaped already (ECHILD); this ends os/exec's own bookkeeping
	return status, nil
}

// CreatePinned under a process-wide wait4(-1) reaper, as in the shim. It runs
// in a child test process: the reaper would steal the other tests' children.
func TestCreatePinnedThroughReaper(t *testing.T) {
	needRoot(t)
	if os.Getenv("POD_TEST_REAPER") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCreatePinnedThroughReaper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "POD_TEST_REAPER=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a child test process: %v\n%s", err, out)
		}
		return
	}
	r := newTestReaper()
	for i := range 20 {
		req := Request{NewUser: i%2 == 0, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps}
		dir := stateDir(t)
		ns, err := CreatePinned(dir, r, req)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := ns.Release(); err != nil {
			t.Fatal(err)
		}
	}
	noChildren(t)
}
