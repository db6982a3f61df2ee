package integration

import (
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Issue 11, item 0: containerd 2.x's overlayfs snapshotter shifts ownership with id-mapped layers where the kernel
// can: the rootfs of a user-namespaced container comes as an overlay (or, for a single layer, a bind) whose options
// carry uidmap= and gidmap=, which the shim must turn into id-mapped mounts of the layers (the kernel refuses them as
// overlay options: "invalid argument"). ctr asks for that with --remap-labels (CRI does for every container of a
// hostUsers: false pod); under 1.6, whose snapshotter has no id-mapped layers, ctr's --uidmap chowns a copy instead,
// and the container must see the same. The container's root owns its rootfs (the image's root files are its root's)
// and can write to it, and nothing is left behind.
func TestIDMappedRootfs(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		userNamespaceReachable(t, c)
		id := c.ID("idmap-rootfs")
		args := []string{"run", "--rm", "--runtime", c.Runtime, "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"}
		if !c.Flavour.Is16() {
			args = append(args, "--remap-labels")
		}
		args = append(args, c.Image, id, "sh", "-c",
			"cat /proc/self/uid_map; stat -c %u:%g /bin/busybox /etc/passwd; echo x > /etc/written && echo wrote")
		r := c.CtrWith(harness.CtrOpts{}, args...)
		want := "0 100000 65536 0:0 0:0 wrote"
		if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != want {
			t.Fatalf("user-namespaced container with an id-mapped rootfs: %q, want %q: %v", got, want, r)
		}
		c.CheckGone(t, id, id)
		if dir := harness.PodStateDir(c.Address, c.Namespace, id); harness.Exists(dir) {
			t.Errorf("pod state %s is left", dir)
		}
	})
}
