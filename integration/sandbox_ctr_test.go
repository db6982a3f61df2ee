package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// forEach2x runs fn under each selected containerd that has the sandbox API (2.x): 1.6 has none, a pod there is a
// group of tasks behind a pause container.
func forEach2x(t *testing.T, o harness.Options, fn func(t *testing.T, c *harness.Containerd)) {
	t.Helper()
	harness.CheckRoot(t)
	ran := false
	for _, f := range harness.Flavours(t) {
		if f.Is16() {
			continue
		}
		ran = true
		t.Run(f.Name, func(t *testing.T) { fn(t, harness.Start(t, f, o)) })
	}
	if !ran {
		t.Fatalf("TEST_CONTAINERD=%q selects no containerd with the sandbox API (2.x)", os.Getenv("TEST_CONTAINERD"))
	}
}

// sandboxStatus asks containerd's shim sandbox controller, which asks the shim.
func sandboxStatus(t *testing.T, c *harness.Containerd, id string) sandbox.ControllerStatus {
	t.Helper()
	cl, ctx := newClient(t, c)
	st, err := cl.SandboxController("shim").Status(ctx, id, false)
	if err != nil {
		t.Fatalf("status of sandbox %s: %v", id, err)
	}
	return st
}

// ctrExec runs a command in a container and returns its stdout.
func ctrExec(t *testing.T, c *harness.Containerd, id string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(c.MustCtr(t, append([]string{"tasks", "exec", "--exec-id", c.ID("x"), id}, args...)...))
}

// sandboxLeftovers lists what is left of sandbox id once removed: containerd's record, the shim, its socket, the
// pod's state dir and mounts, the pod's process, its cgroup, the sandbox bundle.
func sandboxLeftovers(t *testing.T, c *harness.Containerd, id string, podPids ...int) []string {
	var left []string
	for _, s := range c.Sandboxes(t) {
		if s == id {
			left = append(left, "containerd lists sandbox "+id)
		}
	}
	for _, p := range c.ShimProcesses(c.Runtime, "") {
		left = append(left, fmt.Sprintf("shim process %d %q", p.PID, p.Cmdline))
	}
	if sock := strings.TrimPrefix(c.ShimSocketAddress(id), "unix://"); harness.Exists(sock) {
		left = append(left, "shim socket "+sock)
	}
	dir := c.PodDir(c.Namespace, id)
	if harness.Exists(dir) {
		left = append(left, "pod state "+dir)
	}
	for _, m := range harness.MountsUnder(dir) {
		left = append(left, "mount "+m)
	}
	for _, pid := range podPids {
		if harness.ProcessAlive(pid) {
			left = append(left, fmt.Sprintf("pod process %d", pid))
		}
	}
	for _, cg := range []string{"memory", "pids", "cpu"} {
		if d := filepath.Join("/sys/fs/cgroup", cg, c.Namespace, id); harness.Exists(d) {
			left = append(left, "cgroup "+d)
		}
	}
	if b := c.SandboxBundle(c.Namespace, id); harness.Exists(b) {
		left = append(left, "sandbox bundle "+b)
	}
	return left
}

// removeSandbox removes a sandbox with ctr, which logs what failed and exits 0 all the same.
func removeSandbox(t *testing.T, c *harness.Containerd, id string) {
	t.Helper()
	r := c.CtrWith(harness.CtrOpts{}, "sandboxes", "rm", id)
	if r.Code != 0 || strings.Contains(r.Stderr, "level=error") {
		t.Fatalf("%v", r)
	}
}

func checkSandboxGone(t *testing.T, c *harness.Containerd, id string, podPids ...int) {
	t.Helper()
	var left []string
	if !harness.WaitUntil(10*time.Second, func() bool { left = sandboxLeftovers(t, c, id, podPids...); return len(left) == 0 }) {
		t.Fatalf("sandbox %s left behind:\n  %s", id, strings.Join(left, "\n  "))
	}
}

// ctr sandboxes run makes a pod of the shim with no pause container: its own process holds the pod's namespaces,
// containers run with --sandbox share them and get its hostname, files, sysctls and /dev/shm, and removal leaves
// nothing.
func TestCtrSandbox(t *testing.T) {
	forEach2x(t, harness.Options{}, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("sb")
		spec := c.SandboxSpec(t, id, "sb-host", map[string]string{"net.ipv4.ip_unprivileged_port_start": "42", "kernel.msgmax": "12345"}, false)
		c.MustCtr(t, "sandboxes", "run", "--runtime", c.Runtime, spec, id)

		st := sandboxStatus(t, c, id)
		if st.State != "SANDBOX_READY" || st.Pid == 0 || st.SandboxID != id {
			t.Fatalf("status = %+v, want SANDBOX_READY with a pid", st)
		}
		pid := int(st.Pid)
		if pp := c.PodProcessesOfNamespace(); len(pp) != 1 || pp[0].PID != pid {
			t.Fatalf("pod processes %v, want the one of pid %d", pp, pid)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || !strings.Contains(string(status), fmt.Sprintf("NSpid:\t%d\t1\n", pid)) {
			t.Fatalf("the pod's process is not pid 1 of its PID namespace: %v\n%s", err, status)
		}
		// What containerd asks after a restart: Connect and Pids of the sandbox id answer with the pod's process;
		// State of it is NotFound (the sandbox is not a task).
		conn, err := net.Dial("unix", strings.TrimPrefix(c.ShimSocketAddress(id), "unix://"))
		if err != nil {
			t.Fatal(err)
		}
		tc := &harness.TaskClient{Client: ttrpc.NewClient(conn), Service: harness.TaskServiceV3}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if r, err := tc.Connect(ctx, &taskapi.ConnectRequest{ID: id}); err != nil || int(r.TaskPid) != pid {
			t.Errorf("task Connect(%s) = %v, %v; want task pid %d", id, r, err, pid)
		}
		var pids taskapi.PidsResponse
		if err := tc.Client.Call(ctx, harness.TaskServiceV3, "Pids", &taskapi.PidsRequest{ID: id}, &pids); err != nil ||
			len(pids.Processes) != 1 || int(pids.Processes[0].Pid) != pid {
			t.Errorf("task Pids(%s) = %v, %v; want [%d]", id, pids.Processes, err, pid)
		}
		if _, err := tc.State(ctx, &taskapi.StateRequest{ID: id}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Errorf("task State(%s) = %v, want NotFound", id, err)
		}
		cancel()
		tc.Client.Close()

		cgroups, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if want := "/" + c.Namespace + "/" + id + "/" + id; !strings.Contains(string(cgroups), ":memory:"+want+"\n") {
			t.Errorf("the pod's process is not in cgroup %s:\n%s", want, cgroups)
		}

		a, b := c.ID("a"), c.ID("b")
		for _, ctr := range []string{a, b} {
			c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--sandbox", id, c.Image, ctr, "sleep", "1000")
		}
		// containerd ran no start for them (bootstrap version 3): it connected to the sandbox's shim.
		if harness.Exists(filepath.Join(c.Bundle(a), "address")) {
			t.Errorf("containerd ran start for container %s of the sandbox", a)
		}
		if bs, err := os.ReadFile(filepath.Join(c.Bundle(a), "bootstrap.json")); err != nil || !strings.Contains(string(bs), `"version":3`) {
			t.Errorf("bootstrap.json of %s = %s, %v; want version 3", a, bs, err)
		}
		if shims := c.ShimProcesses(c.Runtime, ""); len(shims) != 1 {
			t.Errorf("shims = %v, want the sandbox's only", shims)
		}

		for _, kind := range []string{"net", "ipc", "uts"} {
			want := nsLink(t, pid, kind)
			for _, ctr := range []string{a, b} {
				if got := ctrExec(t, c, ctr, "readlink", "/proc/self/ns/"+kind); got != want {
					t.Errorf("%s namespace of %s = %s, want the pod's %s", kind, ctr, got, want)
				}
			}
		}
		for what, tc := range map[string]struct {
			args []string
			want string
		}{
			"hostname":      {[]string{"hostname"}, "sb-host"},
			"/etc/hostname": {[]string{"cat", "/etc/hostname"}, "sb-host"},
			"port sysctl":   {[]string{"cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"}, "42"},
			"ipc sysctl":    {[]string{"cat", "/proc/sys/kernel/msgmax"}, "12345"},
		} {
			if got := ctrExec(t, c, a, tc.args...); got != tc.want {
				t.Errorf("%s in the container = %q, want %q", what, got, tc.want)
			}
		}
		hostResolv, _ := os.ReadFile("/etc/resolv.conf")
		if got := ctrExec(t, c, a, "cat", "/etc/resolv.conf"); got != strings.TrimSpace(string(hostResolv)) {
			t.Errorf("resolv.conf = %q, want the host's %q", got, hostResolv)
		}
		// One /dev/shm for the pod: what a writes, b reads.
		ctrExec(t, c, a, "sh", "-c", "echo shared > /dev/shm/x")
		if got := ctrExec(t, c, b, "cat", "/dev/shm/x"); got != "shared" {
			t.Errorf("/dev/shm/x in b = %q: the pod's /dev/shm is not shared", got)
		}
		if got := ctrExec(t, c, a, "sh", "-c", "grep ' /dev/shm ' /proc/mounts"); !strings.Contains(got, "tmpfs") {
			t.Errorf("/dev/shm in the container: %q, want a tmpfs", got)
		}

		for _, ctr := range []string{a, b} {
			c.MustCtr(t, "tasks", "kill", "-s", "SIGKILL", ctr)
			harness.Eventually(t, 10*time.Second, ctr+" stopped", func() bool { return c.RuncStatus(t, ctr) != "running" })
			c.MustCtr(t, "tasks", "rm", ctr)
			c.MustCtr(t, "containers", "rm", ctr)
			c.CheckGone(t, ctr, "")
		}
		// Task Shutdown and delete of the containers did not end the sandbox.
		if st := sandboxStatus(t, c, id); st.State != "SANDBOX_READY" || int(st.Pid) != pid {
			t.Fatalf("after its containers went: %+v, want READY with pid %d", st, pid)
		}
		removeSandbox(t, c, id)
		checkSandboxGone(t, c, id, pid)
	})
}
