package integration

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A Kubernetes pod through CRI (crictl): the pause container and two containers run under one shim, share the pod's
// network namespace (the one CRI made and CNI wired: eth0 with an address of the bridge's subnet), and nothing is
// left once the pod is removed.
func TestCRIPod(t *testing.T) {
	harness.ForEachCRI(t, func(t *testing.T, c *harness.CRI) {
		cfg := c.PodConfig("plain")
		pod := c.RunPod(t, cfg)
		a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sleep", "1000"))
		b := c.RunContainer(t, pod, c.ContainerConfig(cfg, "b", "sleep", "1000"))

		pause := c.InspectPod(t, pod.ID).Info.Pid
		want := nsLink(t, pause, "net")
		for _, id := range []string{a, b} {
			if got := c.Exec(t, id, "readlink", "/proc/self/ns/net"); got != want {
				t.Errorf("container %s is in network namespace %s, the pod's is %s", id, got, want)
			}
		}
		if out := c.Exec(t, a, "ip", "-4", "-o", "addr", "show", "eth0"); !subnetHas(c.CNI.Subnet, out) {
			t.Errorf("eth0 of the pod has no address of %s: %q", c.CNI.Subnet, out)
		}
		if harness.IsOurs(c.Runtime) {
			if n := len(c.ShimProcesses(c.Runtime, "")); n != 1 {
				t.Errorf("%d shims serve the pod, want 1", n)
			}
		}
		c.RemovePod(t, pod)
		c.CheckPodGone(t, pod, a, b)
	})
}

// nsLink is /proc/PID/ns/KIND's link text, e.g. net:[4026531840].
func nsLink(t *testing.T, pid int, kind string) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// subnetHas says whether `ip -o addr` output shows an address inside subnet.
func subnetHas(subnet, out string) bool {
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		return false
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			if ip, _, err := net.ParseCIDR(f[i+1]); err == nil && n.Contains(ip) {
				return true
			}
		}
	}
	return false
}
