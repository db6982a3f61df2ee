package integration

import (
	"os"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Issue 9, item 14: Kubernetes pods that use a host namespace (hostNetwork, hostIPC, hostPID). CRI makes each
// container join /proc/<pause pid>/ns/<kind>, which is then the host's namespace under another path; the shim must
// see it is the host's (by identity, not path). Each container runs and is in the host's namespace of that kind, and
// in the pod's own namespaces of the other kinds; nothing is left once the pod is removed.
func TestCRIHostNamespacePods(t *testing.T) {
	node := runtimeapi.NamespaceMode_NODE
	cases := []struct {
		name string
		kind string // the /proc/PID/ns entry that must be the host's
		set  func(*runtimeapi.NamespaceOption)
	}{
		{"host-network", "net", func(o *runtimeapi.NamespaceOption) { o.Network = node }},
		{"host-ipc", "ipc", func(o *runtimeapi.NamespaceOption) { o.Ipc = node }},
		{"host-pid", "pid", func(o *runtimeapi.NamespaceOption) { o.Pid = node }},
	}
	harness.ForEachCRI(t, func(t *testing.T, c *harness.CRI) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				cfg := c.PodConfig(tc.name)
				tc.set(cfg.Linux.SecurityContext.NamespaceOptions)
				pod := c.RunPod(t, cfg)
				a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sleep", "1000"))
				b := c.RunContainer(t, pod, c.ContainerConfig(cfg, "b", "sleep", "1000"))

				pause := c.InspectPod(t, pod.ID).Info.Pid
				for _, id := range []string{a, b} {
					for _, kind := range []string{"net", "ipc", "uts", "pid"} {
						got := c.Exec(t, id, "readlink", "/proc/self/ns/"+kind)
						want, whose := nsLink(t, pause, kind), "the pod's"
						if kind == tc.kind {
							want, whose = nsLink(t, os.Getpid(), kind), "the host's"
						}
						if got != want {
							t.Errorf("container %s: %s namespace %s, want %s %s", id, kind, got, whose, want)
						}
					}
				}
				c.RemovePod(t, pod)
				c.CheckPodGone(t, pod, a, b)
			})
		}
	})
}
