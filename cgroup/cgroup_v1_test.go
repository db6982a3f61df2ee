package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"golang.org/x/sys/unix"
)

const busyboxPath = "/bin/busybox"

// requireV1 skips unless the test can make v1 cgroups: root, the v1 memory
// hierarchy mounted, busybox.
func requireV1(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil || st.Type == unix.CGROUP2_SUPER_MAGIC {
		t.Skip("cgroup v1 is not in use")
	}
	for _, p := range []string{"/sys/fs/cgroup/memory/cgroup.procs", busyboxPath} {
		if _, err := os.Stat(p); err != nil {
			t.Skip(err)
		}
	}
}

// newTestCgroup makes the cgroup podv2-test-<random> under each of the
// hierarchies (relative to /sys/fs/cgroup), and removes it after the test,
// killing whatever is left in it.
func newTestCgroup(t *testing.T, hierarchies ...string) map[string]string {
	t.Helper()
	name := fmt.Sprintf("podv2-test-%08x", rand.Uint32())
	dirs := make(map[string]string)
	for _, h := range hierarchies {
		dir := filepath.Join(cgroupRoot, h, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs[h] = dir
		t.Cleanup(func() { removeTestCgroup(t, dir) })
	}
	return dirs
}

// removeTestCgroup kills the processes left in a test cgroup and removes it.
func removeTestCgroup(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldProcess is a busybox shell that waits on its stdin before it execs
// args, so that it can be put into a cgroup first and then charge its
// memory there.
type heldProcess struct {
	pid    int
	stdin  io.WriteCloser
	status chan int // the exit status, once reaped
}

func startHeld(t *testing.T, args ...string) *heldProcess {
	t.Helper()
	cmd := exec.Command(busyboxPath, append([]string{"sh", "-c", `read x; exec "$@"`, "sh"}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &heldProcess{pid: cmd.Process.Pid, stdin: stdin, status: make(chan int, 1)}
	go func() {
		_ = cmd.Wait()
		status := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = 128 + int(ws.Signal())
		}
		p.status <- status
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		stdin.Close()
		select {
		case <-p.status:
		case <-time.After(10 * time.Second):
			t.Errorf("pid %d not reaped", p.pid)
		}
	})
	return p
}

// join puts the process into the cgroup directories.
func (p *heldProcess) join(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		if err := writeCgroupFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(p.pid)); err != nil {
			t.Fatal(err)
		}
	}
}

// release lets the process exec its command.
func (p *heldProcess) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestCgroupV1Real(t *testing.T) {
	requireV1(t)
	dirs := newTestCgroup(t, "memory", "cpu", "cpuacct", "pids", "blkio")
	p := startHeld(t, busyboxPath, "sleep", "100")
	p.join(t, mapValues(dirs)...)
	p.release(t)

	c, err := Load(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 1 {
		t.Fatalf("version %d, want 1", c.Version())
	}
	for ctrl, dir := range dirs {
		if c.dirs[ctrl] != dir {
			t.Errorf("%s: dir %q, want %q", ctrl, c.dirs[ctrl], dir)
		}
	}

	// The shell execs sleep once released: its new memory is charged to
	// the cgroup (v1 does not move charges when a process moves).
	var m *v1stats.Metrics
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := c.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		m = msg.(*v1stats.Metrics)
		if m.Memory.GetUsage().GetUsage() > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.Memory.GetUsage().GetUsage() == 0 {
		t.Errorf("memory usage 0: %v", m.Memory)
	}
	if m.Memory.GetUsage().GetLimit() == 0 {
		t.Errorf("memory limit 0: %v", m.Memory.GetUsage())
	}
	if m.Pids.GetCurrent() != 1 {
		t.Errorf("pids %v, want current 1", m.Pids)
	}
	if m.CPU.GetUsage() == nil || m.CPU.GetThrottling() == nil {
		t.Errorf("cpu %v", m.CPU)
	}
	if m.Blkio == nil || m.MemoryOomControl == nil {
		t.Errorf("blkio %v, oom_control %v", m.Blkio, m.MemoryOomControl)
	}
	t.Logf("memory usage %d, total_rss %d, cpu %d ns", m.Memory.Usage.Usage, m.Memory.TotalRSS, m.CPU.Usage.Total)

	// Gone process: the cgroup still reads. Removed cgroup: ErrNotExist.
	if err := unix.Kill(p.pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.status
	p.status <- 137 // for the cleanup
	if _, err := c.Metrics(); err != nil {
		t.Errorf("metrics of an empty cgroup: %v", err)
	}
	for _, dir := range dirs {
		removeTestCgroup(t, dir)
	}
	if _, err := c.Metrics(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("metrics of a removed cgroup: err = %v, want ErrNotExist", err)
	}
}

func TestOOMV1Real(t *testing.T) {
	requireV1(t)
	dirs := newTestCgroup(t, "memory")
	mem := dirs["memory"]
	if err := writeCgroupFile(filepath.Join(mem, "memory.limit_in_bytes"), "8388608"); err != nil {
		t.Fatal(err)
	}
	if cgroupPathExists(filepath.Join(mem, "memory.memsw.limit_in_bytes")) {
		if err := writeCgroupFile(filepath.Join(mem, "memory.memsw.limit_in_bytes"), "8388608"); err != nil {
			t.Fatal(err)
		}
	}
	// dd allocates its 64 MiB block and fills it.
	p := startHeld(t, busyboxPath, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	p.join(t, mem)

	c, err := Load(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ooms := make(chan struct{}, 16)
	if err := c.WatchOOM(ctx, func() { ooms <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := c.WatchOOM(ctx, func() {}); err == nil {
		t.Error("second WatchOOM: no error")
	}
	c.mu.Lock()
	w := c.oom
	c.mu.Unlock()

	p.release(t)
	select {
	case <-ooms:
	case <-time.After(10 * time.Second):
		t.Fatal("no OOM reported")
	}
	status := <-p.status
	p.status <- status
	if status != 137 {
		t.Errorf("exit status %d, want 137", status)
	}
	c.FlushOOM(false) // nothing new: no second call
	select {
	case <-ooms:
		t.Error("one kill reported twice")
	case <-time.After(100 * time.Millisecond):
	}
	msg, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if k := msg.(*v1stats.Metrics).MemoryOomControl.GetOomKill(); k != 1 {
		t.Errorf("oom_kill %d, want 1", k)
	}

	// Removing the cgroup ends the watch.
	removeTestCgroup(t, mem)
	select {
	case <-w.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after the cgroup was removed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oom != nil {
		t.Error("stopped watch still registered")
	}
}

func TestOOMV1CancelStops(t *testing.T) {
	requireV1(t)
	dirs := newTestCgroup(t, "memory")
	p := startHeld(t, busyboxPath, "sleep", "100")
	p.join(t, dirs["memory"])
	c, err := Load(p.pid)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a stopped watch can be followed by another
		ctx, cancel := context.WithCancel(context.Background())
		if err := c.WatchOOM(ctx, func() { t.Error("unexpected OOM") }); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		w := c.oom
		c.mu.Unlock()
		cancel()
		select {
		case <-w.stopped():
		case <-time.After(5 * time.Second):
			t.Fatal("watch still running after cancel")
		}
	}
	if err := c.WatchOOM(context.Background(), func() {}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	w := c.oom
	c.mu.Unlock()
	removeTestCgroup(t, dirs["memory"])
	select {
	case <-w.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after the cgroup was removed")
	}
}
