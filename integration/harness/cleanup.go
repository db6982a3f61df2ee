package harness

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dumpLog writes the last n lines of containerd's log to the test log.
func (c *Containerd) dumpLog(t testing.TB, n int) {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		t.Logf("containerd log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), c.LogPath, strings.Join(lines, "\n"))
}

// Stop stops containerd and removes every trace of it: containers and tasks of its namespace, shims still serving it,
// runc state and cgroups of its namespace, shim sockets of the ids it handed out, mounts under Dir, Dir itself. On a
// failed test the log is dumped and kept under $TEST_LOG_DIR. Registered with t.Cleanup by Start; safe to call twice.
//
// Under our runtime, a shim socket left after every container is deleted and the shims have exited fails the test
// (the contract: the shim removes its socket when its last container goes, and `delete` does after a crash).
func (c *Containerd) Stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	t := c.T
	running := false
	select {
	case <-c.exited:
	default:
		running = c.cmd != nil
	}
	if running {
		for i := len(c.beforeStop) - 1; i >= 0; i-- {
			c.beforeStop[i](t)
		}
		c.removeAll(t)
		if !WaitUntil(5*time.Second, func() bool { return len(ProcessesWithArg(c.Address)) == 0 }) {
			t.Logf("cleanup: processes still serving %s after every container was deleted: %v", c.Address, ProcessesWithArg(c.Address))
		}
		c.checkSockets(t, true)
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Logf("containerd did not stop on SIGTERM in 10s: SIGKILL")
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.logFile != nil {
		c.logFile.Close()
	}
	// Shims serving this daemon (identified by its unique socket path in their command line).
	for _, p := range ProcessesWithArg(c.Address) {
		t.Logf("cleanup: killing leftover process %d %q", p.PID, p.Cmdline)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	// Sandboxes' own processes a killed shim left (their cgroups are under the daemon's namespace).
	for _, p := range c.podProcesses() {
		t.Logf("cleanup: killing leftover pod process %d %q", p.PID, p.Cmdline)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	c.checkSockets(t, false)
	// Containers runc still knows in our namespace.
	nsRoot := filepath.Join(RuncRoot, c.Namespace)
	if ents, err := os.ReadDir(nsRoot); err == nil {
		for _, e := range ents {
			t.Logf("cleanup: runc delete --force %s", e.Name())
			out, err := exec.Command("runc", "--root", nsRoot, "delete", "--force", e.Name()).CombinedOutput()
			if err != nil {
				t.Logf("cleanup: runc delete %s: %v %s", e.Name(), err, out)
			}
		}
		os.Remove(nsRoot)
	}
	for _, m := range MountsUnder(c.Dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	// The pods' state of this daemon's namespace: pins a shim killed above
	// could not release.
	podState := filepath.Join(PodStateRoot, c.Namespace)
	for _, m := range slices.Backward(MountsUnder(podState)) {
		t.Logf("cleanup: unmount %s", m)
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	os.RemoveAll(podState)
	for _, f := range c.afterStop {
		f(t)
	}
	removeCgroups(c.Namespace)
	if t.Failed() {
		c.dumpLog(t, 150)
		c.keepLog(t)
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// checkSockets looks for shim sockets named after the ids and pod keys handed out by ID. strict: fail the test if
// one is left under our runtime; otherwise log and remove them.
func (c *Containerd) checkSockets(t testing.TB, strict bool) {
	c.idsMu.Lock()
	keys := append([]string(nil), c.issued...)
	c.idsMu.Unlock()
	var socks, names []string
	for _, k := range keys {
		// A shim started with -debug (containerd at debug level) may also listen on <key>/debug (2.x's does).
		socks = append(socks, c.ShimSocketAddress(k), c.ShimSocketAddress(filepath.Join(k, "debug")))
		names = append(names, k, k+"/debug")
	}
	for i, addr := range socks {
		sock, k := strings.TrimPrefix(addr, "unix://"), names[i]
		if !Exists(sock) {
			continue
		}
		if strict && IsOurs(c.Runtime) {
			t.Errorf("shim socket %s (key %s) left after every container was deleted", sock, k)
		}
		if !strict || !IsOurs(c.Runtime) {
			t.Logf("cleanup: removing shim socket %s (key %s) left by %s", sock, k, c.Runtime)
			os.Remove(sock)
			os.Remove(sock + ".lock")
		}
	}
}

// removeAll deletes every task and container of the namespace through containerd.
func (c *Containerd) removeAll(t testing.TB) {
	opts := CtrOpts{Timeout: 20 * time.Second}
	r := c.CtrWith(opts, "tasks", "ls", "-q")
	for _, id := range strings.Fields(r.Stdout) {
		c.CtrWith(opts, "tasks", "kill", "-a", "-s", "SIGKILL", id)
		c.CtrWith(opts, "tasks", "rm", "-f", id)
	}
	r = c.CtrWith(opts, "containers", "ls", "-q")
	for _, id := range strings.Fields(r.Stdout) {
		if r := c.CtrWith(opts, "containers", "rm", id); r.Code != 0 {
			t.Logf("cleanup: %v", r)
		}
	}
}

func (c *Containerd) keepLog(t testing.TB) {
	dir := os.Getenv("TEST_LOG_DIR")
	if dir == "" {
		dir = "/tmp/podv2-integration-logs"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(t.Name(), "_")
	dst := filepath.Join(dir, name+".log")
	src, err := os.Open(c.LogPath)
	if err != nil {
		return
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, src); err == nil {
		t.Logf("containerd log kept in %s", dst)
	}
}

// removeCgroups removes the (empty) cgroups ctr created for the namespace: ctr's default cgroup path is
// /<namespace>/<id>, under every v1 hierarchy and the unified one.
func removeCgroups(ns string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	if st, err := os.Stat("/sys/fs/cgroup/" + ns); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+ns)
	}
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			os.Remove(d)
		}
	}
}
