package integration

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Issue 11, item 3: a user-namespaced container on the host network cannot mount sysfs (its user namespace does not
// own the network namespace: EPERM), so the shim binds the host's /sys there instead, read-only all the way down:
// the container runs, in its user namespace, and sees the host's network devices in /sys/class/net.
func TestUserNamespaceHostNetworkSysfs(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("the sysfs fallback is this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		userNamespaceReachable(t, c)
		// Other tests make and remove devices meanwhile: the host's device of its default route stands for them.
		hostDev := defaultRouteDevice(t)
		id := c.ID("sysfs")
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, "--net-host",
			"--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", c.Image, id,
			"sh", "-c", "cat /proc/self/uid_map; ls /sys/class/net; touch /sys/class/x 2>/dev/null; echo touch=$?")
		if r.Code != 0 {
			t.Fatalf("a user-namespaced container on the host network: %v", r)
		}
		f := strings.Fields(r.Stdout)
		if len(f) < 4 || strings.Join(f[:3], " ") != "0 100000 65536" || f[len(f)-1] != "touch=1" {
			t.Fatalf("want uid map 0 100000 65536, the host's devices and a read-only /sys; got %q", r.Stdout)
		}
		devs := f[3 : len(f)-1]
		if !slices.Contains(devs, "lo") || !slices.Contains(devs, hostDev) {
			t.Errorf("the container's /sys/class/net lists %v: not the host's (lo and %s)", devs, hostDev)
		}
		c.CheckGone(t, id, id)
	})
}

// defaultRouteDevice is the host's device of its default route (/proc/net/route).
func defaultRouteDevice(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	t.Fatalf("the host has no default route:\n%s", b)
	return ""
}
