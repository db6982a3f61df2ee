package process

import (
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestReaperCommandStatus(t *testing.T) {
	r := Default()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "kill -9 $$"}, 137},
	} {
		status, err := r.Run(exec.Command(tc.args[0], tc.args[1:]...))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if status != tc.want {
			t.Errorf("%v: status %d, want %d", tc.args, status, tc.want)
		}
	}
}

func TestReaperCommandOutput(t *testing.T) {
	r := Default()
	cmd := exec.Command("sh", "-c", "echo out; echo err >&2")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if status, err := r.Run(cmd); err != nil || status != 0 {
		t.Fatalf("status %d err %v", status, err)
	}
	if got := out.String(); got != "out\nerr\n" && got != "err\nout\n" {
		t.Fatalf("output %q", got)
	}
}

// Orphans (here: grandchildren whose parent exited, which a subreaper
// inherits; in the test, children started without the reaper) go to the
// subscribers, in order, and never to a command's waiter.
func TestReaperSubscribersGetOtherChildren(t *testing.T) {
	r := Default()
	sub := r.Subscribe()
	var pids []int
	for i := 0; i < 20; i++ {
		cmd := exec.Command("sh", "-c", "exit 7")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	// Meanwhile, commands through the reaper still get their own status.
	if status, err := r.Run(exec.Command("sh", "-c", "exit 5")); err != nil || status != 5 {
		t.Fatalf("command status %d err %v", status, err)
	}
	seen := map[int]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(pids) {
		select {
		case e := <-sub.C:
			if e.Status != 7 {
				t.Fatalf("exit of pid %d: status %d, want 7", e.Pid, e.Status)
			}
			if seen[e.Pid] {
				t.Fatalf("pid %d reported twice", e.Pid)
			}
			seen[e.Pid] = true
		case <-deadline:
			t.Fatalf("saw %d of %d exits", len(seen), len(pids))
		}
	}
	for _, pid := range pids {
		if !seen[pid] {
			t.Fatalf("pid %d never reported", pid)
		}
	}
}

func TestReaperManyConcurrentCommands(t *testing.T) {
	r := Default()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			status, err := r.Run(exec.Command("sh", "-c", "exit $1", "sh", strconv.Itoa(i%50)))
			if err != nil {
				errs <- err
				return
			}
			if status != i%50 {
				errs <- &statusError{i % 50, status}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

type statusError struct{ want, got int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d, want %d", e.got, e.want) }

type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// A command that exits before anyone waits for it still has its status kept
// for Wait.
func TestReaperWaitAfterExit(t *testing.T) {
	r := Default()
	cmd := exec.Command("sh", "-c", "exit 4")
	if err := r.Start(cmd); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	status, err := r.Wait(cmd)
	if err != nil || status != 4 {
		t.Fatalf("status %d err %v, want 4", status, err)
	}
}
