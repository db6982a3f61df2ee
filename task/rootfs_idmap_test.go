package task

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/api/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/pod"
)

func TestIDMapOptions(t *testing.T) {
	rest, u, g := idmapOptions([]string{"lowerdir=/a", "uidmap=0:100000:65536", "index=off", "gidmap=0:200000:10,10:1:1"})
	if !reflect.DeepEqual(rest, []string{"lowerdir=/a", "index=off"}) || u != "0:100000:65536" || g != "0:200000:10,10:1:1" {
		t.Fatalf("got %q %q %q", rest, u, g)
	}
	m, err := parseIDMap(g)
	if err != nil || !reflect.DeepEqual(m, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 10}, {ContainerID: 10, HostID: 1, Size: 1}}) {
		t.Fatalf("parseIDMap = %v, %v", m, err)
	}
	for _, bad := range []string{"", "1:2", "a:b:c", "0:1:2,"} {
		if _, err := parseIDMap(bad); err == nil {
			t.Errorf("parseIDMap(%q) accepted", bad)
		}
	}
}

// An overlay whose lower layers are id-mapped with the container's user
// namespace (what containerd 2.x's snapshotter asks for a user-namespaced
// pod): host root's files in the layers belong to the pod's root through the
// overlay, and the id-mapped mount it was made from is gone.
func TestMountIDMappedOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("must run as root: mounts and user namespaces")
	}
	dir := t.TempDir()
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	ns, err := pod.CreatePinned(filepath.Join(dir, "pod"), pod.DirectRunner{}, pod.Request{NewUser: true, UIDMappings: maps, GIDMappings: maps})
	if err != nil {
		t.Fatal(err)
	}
	defer pod.CleanupStateDir(filepath.Join(dir, "pod"))
	layers := filepath.Join(dir, "snapshots")
	for _, d := range []string{"1/fs", "2/fs", "3/fs", "3/work"} {
		if err := os.MkdirAll(filepath.Join(layers, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(layers, "1/fs/from-image"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(layers, "3/fs"), 100000, 100000); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "rootfs")
	opts := []string{"index=off", "workdir=" + layers + "/3/work", "upperdir=" + layers + "/3/fs",
		"lowerdir=" + layers + "/2/fs:" + layers + "/1/fs", "uidmap=0:100000:65536", "gidmap=0:100000:65536"}
	userns := idmapUserns{path: ns.UserPath, uids: maps, gids: maps}
	if err := mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target, userns); err != nil {
		t.Fatal(err)
	}
	defer unmountRootfs(target)
	st, err := os.Stat(filepath.Join(target, "from-image"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 100000 || sys.Gid != 100000 {
		t.Errorf("a layer's root-owned file is %d:%d through the overlay, want 100000:100000", sys.Uid, sys.Gid)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".idmapped-layers-*"))
	if len(left) != 0 {
		t.Errorf("id-mapped mount points left: %v", left)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.Contains(f[4], ".idmapped-layers-") {
			t.Errorf("an id-mapped mount is left: %s", l)
		}
	}

	// Mappings that are not the user namespace's are refused, nothing mounted.
	other := filepath.Join(dir, "other")
	bad := append(opts[:4:4], "uidmap=0:200000:65536", "gidmap=0:200000:65536")
	err = mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: bad}}, other, userns)
	if err == nil || !strings.Contains(err.Error(), "do not map as") {
		t.Fatalf("other mappings: %v", err)
	}
	if err := mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, other, idmapUserns{}); err == nil {
		t.Fatal("id-mapped layers mounted for a container without a user namespace")
	}
}
