package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

const podStateRoot = "/run/containerd/io.containerd.pod.v2"

// initPid is the pid of a running container's init, from ctr task ls.
func initPid(t *testing.T, c *harness.Containerd, id string) int {
	t.Helper()
	out := c.MustCtr(t, "tasks", "ls")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			var pid int
			fmt.Sscan(f[1], &pid)
			if pid > 0 {
				return pid
			}
		}
	}
	t.Fatalf("no pid for task %s in:\n%s", id, out)
	return 0
}

func nsInode(t *testing.T, pid int, kind string) string {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// userNamespaceReachable lets a pod's mapped root reach the bundles under the
// daemon's private directory, which is made 0700; containerd's own dirs
// below it are 0711 as on a real host.
func userNamespaceReachable(t *testing.T, c *harness.Containerd) {
	t.Helper()
	if err := os.Chmod(c.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
}

func nsfsMountsUnder(root string) []string {
	var out []string
	for _, m := range harness.Mounts() {
		if m.FSType == "nsfs" && strings.HasPrefix(m.MountPoint, root) {
			out = append(out, m.MountPoint)
		}
	}
	return out
}

func removeTask(t *testing.T, c *harness.Containerd, id string) {
	t.Helper()
	c.Ctr("tasks", "kill", "-s", "SIGKILL", id)
	harness.WaitUntil(10*time.Second, func() bool {
		out, _, _ := c.Ctr("tasks", "ls")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
				return f[2] == "STOPPED"
			}
		}
		return true
	})
	c.Ctr("tasks", "rm", "-f", id)
	c.Ctr("containers", "rm", id)
}

func podExec(t *testing.T, c *harness.Containerd, id, execID, script string) string {
	t.Helper()
	return c.MustCtr(t, "tasks", "exec", "--exec-id", execID, id, "sh", "-c", script)
}

// Two containers of one user-namespaced pod share one shim and one user and network namespace made by the shim:
// mapped ids, their own sysfs, only lo (up), and 127.0.0.1 between them. The pod outlives a container; a container
// with other mappings is refused; the last container takes the pins with it.
func TestPodSharedNamespaces(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("pods are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		userNamespaceReachable(t, c)
		pod := c.ID("pa")
		args := func(id string, maps string, cmd ...string) []string {
			a := []string{"run", "-d", "--runtime", c.Runtime, "--annotation", "io.containerd.pod.v2.pod=" + pod,
				"--uidmap", maps, "--gidmap", maps, c.Image, id}
			return append(a, cmd...)
		}
		a, b := c.ID("a"), c.ID("b")
		for _, id := range []string{a, b} {
			c.MustCtr(t, args(id, "0:100000:65536", "sleep", "1000")...)
			t.Cleanup(func() { removeTask(t, c, id) })
		}
		if shims := c.ShimProcesses(c.Runtime, ""); len(shims) != 1 {
			t.Fatalf("want one shim for the pod, got %d: %v", len(shims), shims)
		}
		pa, pb := initPid(t, c, a), initPid(t, c, b)
		netA, userA := nsInode(t, pa, "net"), nsInode(t, pa, "user")
		if netA != nsInode(t, pb, "net") || userA != nsInode(t, pb, "user") {
			t.Fatalf("containers of one pod in different namespaces: %s %s vs %s %s", netA, userA, nsInode(t, pb, "net"), nsInode(t, pb, "user"))
		}
		if netA == nsInode(t, os.Getpid(), "net") || userA == nsInode(t, os.Getpid(), "user") {
			t.Fatalf("pod uses the host's namespaces: %s %s", netA, userA)
		}
		for i, id := range []string{a, b} {
			out := podExec(t, c, id, fmt.Sprintf("look%d", i), "cat /proc/self/uid_map; grep ' /sys ' /proc/mounts | cut -d' ' -f3; ls /sys/class/net; cat /sys/class/net/lo/flags")
			f := strings.Fields(out)
			if len(f) != 6 || f[0] != "0" || f[1] != "100000" || f[2] != "65536" || f[3] != "sysfs" || f[4] != "lo" || f[5] != "0x9" {
				t.Fatalf("%s: want uid map 0 100000 65536, sysfs, only lo, flags 0x9; got %q", id, out)
			}
		}
		// 127.0.0.1 is shared: a server in a, a client in b.
		c.MustCtr(t, "tasks", "exec", "-d", "--exec-id", "srv", a, "sh", "-c", "echo pod-hello | nc -l -p 8080")
		var got string
		harness.WaitUntil(10*time.Second, func() bool {
			r := c.CtrWith(harness.CtrOpts{Timeout: 5 * time.Second}, "tasks", "exec", "--exec-id", c.ID("cli"), b, "sh", "-c", "nc 127.0.0.1 8080 </dev/null")
			got = r.Stdout
			return strings.Contains(got, "pod-hello")
		})
		if !strings.Contains(got, "pod-hello") {
			t.Fatalf("b did not reach a over 127.0.0.1: %q", got)
		}

		// Other mappings are refused, naming both; the pod is unharmed.
		bad := c.ID("bad")
		r := c.CtrWith(harness.CtrOpts{}, args(bad, "0:200000:65536", "sleep", "1000")...)
		c.Ctr("containers", "rm", bad)
		if r.Code == 0 || !strings.Contains(r.Stderr, "200000") || !strings.Contains(r.Stderr, "100000") {
			t.Fatalf("container with other mappings: want a refusal naming both mappings, got %v", r)
		}
		podExec(t, c, b, "alive", "true")

		// a goes; b stays; a third joins the same netns.
		removeTask(t, c, a)
		podExec(t, c, b, "still", "true")
		third := c.ID("c")
		c.MustCtr(t, args(third, "0:100000:65536", "sleep", "1000")...)
		t.Cleanup(func() { removeTask(t, c, third) })
		if n := nsInode(t, initPid(t, c, third), "net"); n != netA {
			t.Fatalf("a new container of the pod got netns %s, want the pod's %s", n, netA)
		}

		// The last container takes the pod with it.
		removeTask(t, c, b)
		removeTask(t, c, third)
		harness.Eventually(t, 10*time.Second, "the pod's shim exits and its pins go", func() bool {
			return len(c.ShimProcesses(c.Runtime, "")) == 0 && len(nsfsMountsUnder(filepath.Join(podStateRoot, c.Namespace))) == 0
		})
		for _, id := range []string{a, b, third} {
			c.CheckGone(t, id, "")
		}
	})
}

// A pod without a user namespace still gets one network namespace of its own, shared, with lo up; two pods have two
// shims and two network namespaces.
func TestPodNetworkOnlyAndTwoPods(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("pods are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		podA, podB := c.ID("pna"), c.ID("pnb")
		ids := map[string]string{c.ID("a1"): podA, c.ID("a2"): podA, c.ID("b1"): podB}
		for id, pod := range ids {
			c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--annotation", "io.containerd.pod.v2.pod="+pod, c.Image, id, "sleep", "1000")
			t.Cleanup(func() { removeTask(t, c, id) })
		}
		net := map[string]string{}
		for id, pod := range ids {
			n := nsInode(t, initPid(t, c, id), "net")
			if prev, ok := net[pod]; ok && prev != n {
				t.Fatalf("pod %s: containers in netns %s and %s", pod, prev, n)
			}
			net[pod] = n
			if out := podExec(t, c, id, "lo", "ls /sys/class/net; cat /sys/class/net/lo/flags"); strings.Fields(out)[0] != "lo" || !strings.Contains(out, "0x9") {
				t.Fatalf("%s: want only lo, up: %q", id, out)
			}
		}
		host := nsInode(t, os.Getpid(), "net")
		if net[podA] == net[podB] || net[podA] == host || net[podB] == host {
			t.Fatalf("want two private netns, got %s and %s (host %s)", net[podA], net[podB], host)
		}
		if shims := c.ShimProcesses(c.Runtime, ""); len(shims) != 2 {
			t.Fatalf("two pods: want two shims, got %d", len(shims))
		}
		for id := range ids {
			removeTask(t, c, id)
		}
		harness.Eventually(t, 10*time.Second, "both shims exit and the pins go", func() bool {
			return len(c.ShimProcesses(c.Runtime, "")) == 0 && len(nsfsMountsUnder(filepath.Join(podStateRoot, c.Namespace))) == 0
		})
	})
}

// kill -9 of a pod's shim: containerd reports the tasks gone, and after they are removed no pin, state dir,
// process or socket of the pod is left.
func TestPodShimKill9(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("pods are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		userNamespaceReachable(t, c)
		pod := c.ID("pk")
		a, b := c.ID("a"), c.ID("b")
		var pids []int
		for _, id := range []string{a, b} {
			c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, "--annotation", "io.containerd.pod.v2.pod="+pod,
				"--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", c.Image, id, "sleep", "1000")
			t.Cleanup(func() { removeTask(t, c, id) })
			pids = append(pids, initPid(t, c, id))
		}
		shims := c.ShimProcesses(c.Runtime, "")
		if len(shims) != 1 {
			t.Fatalf("want one shim, got %v", shims)
		}
		if len(nsfsMountsUnder(filepath.Join(podStateRoot, c.Namespace))) == 0 {
			t.Fatal("no pins while the pod runs")
		}
		if err := syscallKill(shims[0].PID); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{a, b} {
			harness.Eventually(t, 20*time.Second, "containerd forgets task "+id, func() bool {
				out, _, _ := c.Ctr("tasks", "ls")
				for _, line := range strings.Split(out, "\n") {
					if f := strings.Fields(line); len(f) >= 3 && f[0] == id && f[2] != "STOPPED" {
						return false
					}
				}
				return true
			})
			c.Ctr("tasks", "rm", "-f", id)
			c.Ctr("containers", "rm", id)
		}
		gone := func() bool {
			return len(nsfsMountsUnder(filepath.Join(podStateRoot, c.Namespace))) == 0 && !harness.ProcessAlive(pids[0]) && !harness.ProcessAlive(pids[1])
		}
		if !harness.WaitUntil(20*time.Second, gone) {
			t.Fatalf("after 20 s: pins %v, container processes %d alive %v, %d alive %v", nsfsMountsUnder(filepath.Join(podStateRoot, c.Namespace)),
				pids[0], harness.ProcessAlive(pids[0]), pids[1], harness.ProcessAlive(pids[1]))
		}
		for _, id := range []string{a, b} {
			c.CheckGone(t, id, pod)
		}
	})
}
