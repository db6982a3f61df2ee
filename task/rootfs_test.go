package task

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/api/types"
	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	flags, prop, data := parseMountOptions([]string{"rbind", "ro", "nosuid", "rprivate", "lowerdir=/a", "rw", "nodev"})
	if flags != unix.MS_BIND|unix.MS_REC|unix.MS_NOSUID|unix.MS_NODEV {
		t.Fatalf("flags %#x", flags)
	}
	if prop != unix.MS_PRIVATE|unix.MS_REC {
		t.Fatalf("propagation %#x", prop)
	}
	if len(data) != 1 || data[0] != "lowerdir=/a" {
		t.Fatalf("data %q", data)
	}
}

func TestCommonLayerDir(t *testing.T) {
	for _, tc := range []struct {
		data []string
		want string
	}{
		{[]string{"lowerdir=/s/snapshots/1/fs:/s/snapshots/22/fs", "upperdir=/s/snapshots/3/fs", "workdir=/s/snapshots/3/work"}, "/s/snapshots"},
		{[]string{"lowerdir=/a/x:/b/y"}, "/"},
		{[]string{"index=off"}, ""},
	} {
		if got := commonLayerDir(tc.data); got != tc.want {
			t.Errorf("commonLayerDir(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func isMountPoint(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// An overlay with so many lower layers that its options exceed a page is
// mounted relative to the layers' common parent, and unmounted cleanly.
func TestMountOverlayManyLayers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root (mount)")
	}
	dir := t.TempDir()
	snap := filepath.Join(dir, "io.containerd.snapshotter.v1.overlayfs", "snapshots")
	var lowers []string
	for i := 0; i < 120; i++ {
		l := filepath.Join(snap, fmt.Sprint(i), "fs")
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("layer%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	upper := filepath.Join(snap, "top", "fs")
	work := filepath.Join(snap, "top", "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := []string{"index=off", "lowerdir=" + strings.Join(lowers, ":"), "upperdir=" + upper, "workdir=" + work}
	if n := len(strings.Join(opts, ",")); n < unix.Getpagesize() {
		t.Fatalf("test options only %d bytes, want more than a page", n)
	}
	target := filepath.Join(dir, "bundle", "rootfs")
	if err := mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(target) })
	for _, name := range []string{"layer0", "layer119"} {
		if _, err := os.Stat(filepath.Join(target, name)); err != nil {
			t.Fatalf("%s not visible through the overlay: %v", name, err)
		}
	}
	if err := unmountRootfs(target); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(t, target) {
		t.Fatal("rootfs still mounted after unmount")
	}
	// Idempotent.
	if err := unmountRootfs(target); err != nil {
		t.Fatal(err)
	}
}

func TestMountBindReadOnlyAndUndo(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root (mount)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "rootfs")
	if err := mountRootfs([]*types.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(target) })
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); err == nil {
		t.Fatal("wrote through a read-only bind mount")
	}
	unmountRootfs(target)

	// A failing second mount undoes the first.
	err := mountRootfs([]*types.Mount{
		{Type: "bind", Source: src, Options: []string{"rbind"}},
		{Type: "bind", Source: filepath.Join(dir, "missing"), Target: "/sub", Options: []string{"rbind"}},
	}, target, nil)
	if err == nil {
		t.Fatal("mount of a missing source succeeded")
	}
	if !strings.Contains(err.Error(), "missing") {
		t.Fatalf("error does not name the source: %v", err)
	}
	if isMountPoint(t, target) {
		t.Fatal("first mount not undone after the second failed")
	}
}
