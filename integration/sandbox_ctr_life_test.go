package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// runSandbox runs a sandbox with ctr and returns the pid of its own process.
func runSandbox(t *testing.T, c *harness.Containerd, id string, userns bool) int {
	t.Helper()
	if userns {
		// Runtimes in the pod's user namespace reach the bundles below it.
		if err := os.Chmod(c.Dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	spec := c.SandboxSpec(t, id, id+"-host", nil, userns)
	c.MustCtr(t, "sandboxes", "run", "--runtime", c.Runtime, spec, id)
	st := sandboxStatus(t, c, id)
	if st.State != "SANDBOX_READY" || st.Pid == 0 {
		t.Fatalf("sandbox %s: %+v, want SANDBOX_READY with a pid", id, st)
	}
	return int(st.Pid)
}

// removeContainer kills and removes a container of a sandbox.
func removeContainer(t *testing.T, c *harness.Containerd, id string) {
	t.Helper()
	c.MustCtr(t, "tasks", "kill", "-s", "SIGKILL", id)
	harness.Eventually(t, 10*time.Second, id+" stopped", func() bool { return c.RuncStatus(t, id) != "running" })
	c.MustCtr(t, "tasks", "rm", id)
	c.MustCtr(t, "containers", "rm", id)
}

// StopSandbox ends the pod's process and answers Wait; the shim keeps serving the stopped sandbox, which takes no
// container, until it is removed.
func TestCtrSandboxStop(t *testing.T) {
	forEach2x(t, harness.Options{}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		pid := runSandbox(t, c, id, false)
		cl, ctx := newClient(t, c)
		sb, err := cl.LoadSandbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		exitC, err := sb.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-exitC:
			t.Fatalf("Wait returned before the sandbox stopped: %v", e)
		default:
		}
		if err := sb.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-exitC:
			if e.Error() != nil || e.ExitCode() != 137 {
				t.Errorf("Wait = %d, %v; want 137 (SIGKILL)", e.ExitCode(), e.Error())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return after StopSandbox")
		}
		if harness.ProcessAlive(pid) {
			t.Errorf("the pod's process %d outlived StopSandbox", pid)
		}
		st := sandboxStatus(t, c, id)
		if st.State != "SANDBOX_NOTREADY" || st.ExitedAt.IsZero() {
			t.Errorf("status after stop = %+v, want SANDBOX_NOTREADY with exited_at", st)
		}
		if d := filepath.Join("/sys/fs/cgroup/memory", c.Namespace, id, id); harness.Exists(d) {
			t.Errorf("the pod process's cgroup %s outlived StopSandbox", d)
		}
		// Wait again (containerd does after a restart): at once.
		if _, err := cl.SandboxController("shim").Wait(ctx, id); err != nil {
			t.Errorf("second Wait: %v", err)
		}
		r := c.CtrWith(harness.CtrOpts{}, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, c.Image, c.ID("late"), "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "not ready") {
			t.Errorf("a container in a stopped sandbox: %v, want refused as not ready", r)
		}
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}

// A step of CreateSandbox or StartSandbox made to fail leaves nothing: no shim, no pod state, no pod process, no
// cgroup; and once the fault is gone the same id runs.
func TestCtrSandboxFaults(t *testing.T) {
	faults := filepath.Join(os.TempDir(), fmt.Sprintf("podv2-faults-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(faults) })
	forEach2x(t, harness.Options{Env: []string{"CONTAINERD_SHIM_POD_V2_FAULTS=@" + faults}}, func(t *testing.T, c *harness.Containerd) {
		for _, step := range []string{"sandbox.namespaces", "sandbox.files", "sandbox.record", "sandbox.cgroup", "sandbox.process",
			"sandbox.cgroup-join", "sandbox.start-record"} {
			t.Run(step, func(t *testing.T) {
				if err := os.WriteFile(faults, []byte(step), 0o644); err != nil {
					t.Fatal(err)
				}
				id := c.ID("sb")
				spec := c.SandboxSpec(t, id, "h", map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}, true)
				r := c.CtrWith(harness.CtrOpts{}, "sandboxes", "run", "--runtime", c.Runtime, spec, id)
				if r.Code == 0 || !strings.Contains(r.Stderr, step+": fault injected") {
					t.Fatalf("sandbox run with %s failing: %v", step, r)
				}
				if pp := c.PodProcessesOfNamespace(); len(pp) != 0 {
					t.Errorf("pod processes left: %v", pp)
				}
				removeSandbox(t, c, id)
				checkSandboxGone(t, c, id)

				os.Remove(faults)
				pid := runSandbox(t, c, id, true)
				removeSandbox(t, c, id)
				checkSandboxGone(t, c, id, pid)
			})
		}
	})
}

// containerd restarted with a sandbox and its containers running: containerd reconnects (task Connect and Pids of
// the sandbox id answer, State of it is NotFound), the sandbox stays READY with the same process, its containers
// RUNNING, and a container joins it afterwards.
func TestCtrSandboxContainerdRestart(t *testing.T) {
	forEach2x(t, harness.Options{}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		pid := runSandbox(t, c, id, false)
		a := c.ID("a")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, c.Image, a, "sleep", "1000")

		c.Restart(t)
		if !c.LogContains("connecting to shim " + id) {
			t.Errorf("containerd did not reload the sandbox's shim")
		}
		if st := sandboxStatus(t, c, id); st.State != "SANDBOX_READY" || int(st.Pid) != pid {
			t.Fatalf("after restart: %+v, want READY with pid %d", st, pid)
		}
		if s := c.RuncStatus(t, a); s != "running" {
			t.Fatalf("container %s after restart: %q", a, s)
		}
		out := c.MustCtr(t, "tasks", "ls")
		if !strings.Contains(out, a) || strings.Contains(out, id+" ") {
			t.Errorf("tasks after restart:\n%s\nwant %s listed, and the sandbox not as a task", out, a)
		}
		if got := ctrExec(t, c, a, "hostname"); got != id+"-host" {
			t.Errorf("hostname in %s after restart = %q", a, got)
		}
		b := c.ID("b")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, c.Image, b, "sleep", "1000")
		if got, want := ctrExec(t, c, b, "readlink", "/proc/self/ns/net"), nsLink(t, pid, "net"); got != want {
			t.Errorf("a container joined after restart is in %s, want the pod's %s", got, want)
		}
		removeContainer(t, c, a)
		removeContainer(t, c, b)
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}

// A shim killed with SIGKILL: the sandbox is no longer ready, and containerd's cleanup (delete on the bundles of
// the sandbox and its containers) and removal leave nothing: no pod process, pins, cgroup or container.
func TestCtrSandboxShimKill9(t *testing.T) {
	forEach2x(t, harness.Options{}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		pid := runSandbox(t, c, id, true)
		a := c.ID("a")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", c.Image, a, "sleep", "1000")
		shims := c.ShimProcesses(c.Runtime, "")
		if len(shims) != 1 {
			t.Fatalf("shims = %v", shims)
		}
		if err := syscall.Kill(shims[0].PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// containerd answers with an error until it has seen the shim go, then NOTREADY.
		cl, ctx := newClient(t, c)
		harness.Eventually(t, 10*time.Second, "the sandbox not ready", func() bool {
			st, err := cl.SandboxController("shim").Status(ctx, id, false)
			return err == nil && st.State != "SANDBOX_READY"
		})
		harness.Eventually(t, 10*time.Second, "the pod's process gone", func() bool { return !harness.ProcessAlive(pid) })
		c.CtrWith(harness.CtrOpts{}, "tasks", "rm", "-f", a)
		c.MustCtr(t, "containers", "rm", a)
		c.CheckGone(t, a, "")
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}

// A user-namespaced sandbox: the shim makes the pod's user namespace and its network namespace inside it, the pod's
// process is in both, and a container with the same mappings joins them.
func TestCtrSandboxUserNamespace(t *testing.T) {
	forEach2x(t, harness.Options{}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		pid := runSandbox(t, c, id, true)
		uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
		if err != nil || strings.Join(strings.Fields(string(uidMap)), " ") != "0 100000 65536" {
			t.Fatalf("uid_map of the pod's process = %q, %v", uidMap, err)
		}
		a := c.ID("a")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", c.Image, a, "sleep", "1000")
		for _, kind := range []string{"user", "net", "ipc", "uts"} {
			if got, want := ctrExec(t, c, a, "readlink", "/proc/self/ns/"+kind), nsLink(t, pid, kind); got != want {
				t.Errorf("%s namespace of %s = %s, want the pod's %s", kind, a, got, want)
			}
		}
		if got := strings.Join(strings.Fields(ctrExec(t, c, a, "cat", "/proc/self/uid_map")), " "); got != "0 100000 65536" {
			t.Errorf("uid_map in the container = %q", got)
		}
		if got := ctrExec(t, c, a, "hostname"); got != id+"-host" {
			t.Errorf("hostname = %q", got)
		}
		removeContainer(t, c, a)
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}

// Bootstrap version 2 (CONTAINERD_SHIM_POD_V2_BOOTSTRAP_VERSION=2, as containerd before 2.3 gets it): containerd
// runs start for each container of the sandbox; one that names the sandbox as its pod reaches the sandbox's shim.
func TestCtrSandboxBootstrapV2(t *testing.T) {
	forEach2x(t, harness.Options{Env: []string{"CONTAINERD_SHIM_POD_V2_BOOTSTRAP_VERSION=2"}}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		pid := runSandbox(t, c, id, false)
		a := c.ID("a")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, "--annotation", harness.PodAnnotation+"="+id, c.Image, a, "sleep", "1000")
		if !harness.Exists(filepath.Join(c.Bundle(a), "address")) {
			t.Errorf("containerd ran no start for %s: not the version 2 path", a)
		}
		if shims := c.ShimProcesses(c.Runtime, ""); len(shims) != 1 {
			t.Errorf("shims = %v, want the sandbox's only", shims)
		}
		if got, want := ctrExec(t, c, a, "readlink", "/proc/self/ns/net"), nsLink(t, pid, "net"); got != want {
			t.Errorf("net namespace of %s = %s, want the pod's %s", a, got, want)
		}
		removeContainer(t, c, a)
		if st := sandboxStatus(t, c, id); st.State != "SANDBOX_READY" {
			t.Fatalf("the sandbox after its container's shutdown and delete: %+v", st)
		}
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}
