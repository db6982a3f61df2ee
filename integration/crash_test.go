package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// taskPID is the PID column of `ctr task ls` for id (0 if not listed).
func taskPID(c *harness.Containerd, id string) int {
	out, _, _ := c.Ctr("tasks", "ls")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// After `kill -9` of the shim of a running container, containerd reports the task stopped (or gone), and once the
// task and container are deleted nothing is left: no mount of the rootfs, no runc state, no process of the container,
// no shim, and (ours only) no socket file of that shim. containerd notices the dead shim on its own and runs
// `<shim> delete` in the bundle, which must clean up without a shim alive.
func TestShimKill9(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("crash")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, c.Image, id, "sleep", "1000")
		waitTaskStatus(t, c, id, "RUNNING")
		pid := taskPID(c, id)
		if pid <= 0 || !harness.ProcessAlive(pid) {
			t.Fatalf("container process %d not alive", pid)
		}
		shims := c.ShimProcesses(c.Runtime, id)
		if len(shims) != 1 {
			t.Fatalf("want one shim process for %s, got %v", id, shims)
		}
		// What must go afterwards exists now.
		if len(c.RootfsMounts(id)) == 0 {
			t.Fatalf("no rootfs mount for %s before the crash", id)
		}
		if !harness.Exists(c.RuncStateDir(id)) {
			t.Fatalf("no runc state %s before the crash", c.RuncStateDir(id))
		}
		sockAddr := c.ShimSocketAddress(id)
		sock := strings.TrimPrefix(sockAddr, "unix://")
		if !harness.Exists(sock) {
			t.Fatalf("no shim socket %s before the crash (shim sockets: %v)", sock, harness.ShimSockets())
		}
		// The shim writes <bundle>/address (the reference one only when started by 1.6-2.2; ours always); 2.3+
		// keep the shim's answer in <bundle>/bootstrap.json themselves.
		if harness.IsOurs(c.Runtime) || c.Flavour.Is16() {
			if b, err := os.ReadFile(filepath.Join(c.Bundle(id), "address")); err != nil || strings.TrimSpace(string(b)) != sockAddr {
				t.Errorf("bundle address file: %q (%v), want %q", b, err, sockAddr)
			}
		}
		if !c.Flavour.Is16() {
			if b, err := os.ReadFile(filepath.Join(c.Bundle(id), "bootstrap.json")); err != nil || !strings.Contains(string(b), sockAddr) {
				t.Errorf("bundle bootstrap.json: %q (%v), want the address %q", b, err, sockAddr)
			}
		}

		t.Logf("kill -9 shim %d (container process %d)", shims[0].PID, pid)
		if err := syscall.Kill(shims[0].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}

		// containerd reports the task stopped or gone, and publishes its exit.
		var status string
		if !harness.WaitUntil(20*time.Second, func() bool {
			status = taskStatus(c, id)
			return status == "" || status == "STOPPED"
		}) {
			t.Fatalf("task %s still %s 20 s after kill -9 of its shim", id, status)
		}
		exit := ev.MustWaitFor(t, 10*time.Second, "/tasks/exit of "+id+" after the shim died", func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == id
		})
		t.Logf("task status after the crash: %q; exit event %s", status, exit)
		if exit.Num("exit_status") != 137 {
			t.Errorf("exit after the shim died: want exit_status 137: %s", exit)
		}

		if r := c.CtrWith(harness.CtrOpts{}, "tasks", "rm", "-f", id); r.Code != 0 {
			// containerd 1.6 and 2.4 usually drop the task themselves: not found is fine.
			if !strings.Contains(r.Stderr, "not found") {
				t.Errorf("ctr tasks rm after the crash: %v", r)
			}
		}
		c.MustCtr(t, "containers", "rm", id)

		// No socket left is a promise of ours: the reference shim leaks its socket when killed (its code says so:
		// "If the shim server is down (like oom killer), the address socket might be leaking"), and its delete
		// does not remove it.
		key := ""
		if harness.IsOurs(c.Runtime) {
			key = id
		}
		c.CheckGone(t, id, key)
		harness.Eventually(t, 10*time.Second, "container process gone", func() bool { return !harness.ProcessAlive(pid) })
		if !harness.IsOurs(c.Runtime) && harness.Exists(sock) {
			t.Logf("reference runtime leaked its socket %s (expected upstream behaviour); removing it", sock)
			os.Remove(sock)
			os.Remove(sock + ".lock")
		}
		if len(c.ShimProcesses(c.Runtime, "")) != 0 {
			t.Errorf("shim processes left: %v", c.ShimProcesses(c.Runtime, ""))
		}
	})
}
