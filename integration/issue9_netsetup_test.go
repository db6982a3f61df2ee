package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// networkSetupScript is a createRuntime hook that sets up a container's network as nerdctl's CNI hook does: a veth
// whose host end is $1 and whose container end is eth0 in the container's network namespace (/proc/<pid>/ns/net of
// the state runc passes on stdin). A failed setup is cleaned up as nerdctl's is (CNI DEL in that namespace, which
// deletes eth0 there). Its poststop twin deletes the host end, and the container's eth0 with it.
const networkSetupScript = `#!/bin/sh
pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p')
if ! ip link add "$1" type veth peer name eth0 netns "$pid"; then
	nsenter --net="/proc/$pid/ns/net" ip link del eth0
	exit 1
fi
nsenter --net="/proc/$pid/ns/net" ip link set eth0 up
`

const networkTeardownScript = `#!/bin/sh
cat >/dev/null
ip link del "$1" 2>/dev/null
exit 0
`

// withNetworkHooks adds the network hooks (createRuntime and poststop, as nerdctl adds its own to every container)
// whose host end is named hostEnd; with setup false the hooks do nothing to the network (nerdctl's hook with
// --net container:<id>, host or none).
func withNetworkHooks(dir, hostEnd string, setup bool) oci.SpecOpts {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	create, stop := filepath.Join(dir, "net-setup.sh"), filepath.Join(dir, "net-teardown.sh")
	if !setup {
		create, stop = "/bin/true", "/bin/true"
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if s.Hooks == nil {
			s.Hooks = &specs.Hooks{}
		}
		s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, specs.Hook{Path: create, Args: []string{create, hostEnd}, Env: env})
		s.Hooks.Poststop = append(s.Hooks.Poststop, specs.Hook{Path: stop, Args: []string{stop, hostEnd}, Env: env})
		return nil
	}
}

// Issue 9, item 17: no container loses its network because another joined its pod. With nerdctl, every container of
// the default network carries a hook that adds eth0 to its network namespace; a second such container of a pod is
// put into the pod's network namespace, where its hook fails (eth0 exists) and its cleanup deletes the first
// container's eth0. Under our runtime the second container is refused with InvalidArgument telling the user to join
// the pod's network; the first keeps its eth0. Containers that join the pod's network by path with nerdctl's hook
// (--net container:<first>) and plain members (ctr: a new network namespace asked for, no hooks) still join it.
func TestPodMemberOwnNetworkSetup(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		for name, script := range map[string]string{"net-setup.sh": networkSetupScript, "net-teardown.sh": networkTeardownScript} {
			if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(script), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		cl, ctx := newClient(t, c)
		pod := c.ID("netpod")
		ann := map[string]string{harness.GroupAnnotation(c.Runtime): pod}
		hostEnd := func(s string) string { return "pv2" + strings.TrimPrefix(c.Namespace, "podv2-it-")[:8] + s }
		t.Cleanup(func() {
			for _, s := range []string{"a", "b"} {
				exec.Command("ip", "link", "del", hostEnd(s)).Run()
			}
		})
		var all []*clientContainer
		run := func(id string, opts ...oci.SpecOpts) (*clientContainer, error) {
			cc, err := newClientTask(ctx, t, cl, c, containerSpec{id: id, args: []string{"sleep", "1000"}, annotations: ann, specOpts: opts})
			all = append(all, cc)
			if err != nil {
				return cc, err
			}
			return cc, cc.task.Start(ctx)
		}
		eth0 := func(id string) string {
			r := c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", c.ID("ip"), id, "cat", "/sys/class/net/eth0/address")
			if r.Code != 0 {
				return ""
			}
			return strings.TrimSpace(r.Stdout)
		}

		aID := c.ID("a")
		a, err := run(aID, withNetworkHooks(c.Dir, hostEnd("a"), true))
		if err != nil {
			t.Fatalf("first container with a network hook: %v", err)
		}
		mac := eth0(aID)
		if mac == "" {
			t.Fatalf("the first container's hook gave it no eth0")
		}

		bID := c.ID("b")
		_, err = run(bID, withNetworkHooks(c.Dir, hostEnd("b"), true))
		if harness.IsOurs(c.Runtime) {
			if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "--net container:") {
				t.Errorf("second container with a network hook: %v\nwant InvalidArgument telling to join the pod's network (--net container:)", err)
			}
		} else if err != nil {
			t.Errorf("second container with a network hook under %s: %v", c.Runtime, err)
		}
		t.Logf("second container with its own network setup: %v", err)
		if got := eth0(aID); got != mac {
			t.Fatalf("the first container's eth0 is %q after a second container joined its pod, was %q", got, mac)
		}

		if harness.IsOurs(c.Runtime) {
			// nerdctl --net container:<a>: the network namespace by path, and nerdctl's hook, which sets up nothing.
			netns := fmt.Sprintf("/proc/%d/ns/net", a.task.Pid())
			cID := c.ID("c")
			if _, err := run(cID, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns}),
				withNetworkHooks(c.Dir, "", false)); err != nil {
				t.Fatalf("a container joining the pod's network by path with a hook: %v", err)
			}
			// ctr run --annotation io.containerd.pod.v2.pod=...: a new network namespace asked for, no hooks.
			dID := c.ID("d")
			if _, err := run(dID); err != nil {
				t.Fatalf("a plain member of the pod: %v", err)
			}
			for _, id := range []string{cID, dID} {
				if got := eth0(id); got != mac {
					t.Errorf("container %s sees eth0 %q, want the pod's %q", id, got, mac)
				}
			}
		}

		// Remove everything: the hooks' poststop removes what they set up, and nothing is left.
		for _, cc := range all {
			if cc.task != nil {
				if _, err := cc.task.Delete(ctx, client.WithProcessKill); err != nil {
					t.Errorf("delete task %s: %v", cc.c.ID(), err)
				}
				cc.task = nil
			}
			if err := cc.c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
				t.Errorf("delete container %s: %v", cc.c.ID(), err)
			}
		}
		for _, cc := range all {
			c.CheckGone(t, cc.c.ID(), "")
		}
		harness.Eventually(t, 10*time.Second, "the hooks' host ends are gone", func() bool {
			return !harness.Exists("/sys/class/net/"+hostEnd("a")) && !harness.Exists("/sys/class/net/"+hostEnd("b"))
		})
		if sock := strings.TrimPrefix(c.ShimSocketAddress(pod), "unix://"); harness.IsOurs(c.Runtime) && harness.Exists(sock) {
			t.Errorf("the pod's shim socket %s is left", sock)
		}
	})
}
