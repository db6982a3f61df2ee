package task

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/podv2/containerd-shim-pod-v2/api/types"
	"golang.org/x/sys/unix"
)

// mountsBelow lists the mount points at or below dir.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// detachBelow unmounts whatever a test left mounted at or below dir, deepest
// first, so a failing test does not leave mounts behind.
func detachBelow(t *testing.T, dir string) {
	t.Helper()
	for range 16 {
		ms := mountsBelow(t, dir)
		if len(ms) == 0 {
			return
		}
		slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
		for _, m := range ms {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	t.Errorf("mounts below %s keep coming back", dir)
}

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// A rootfs mount's target is resolved inside the rootfs: a symlink of the
// image (absolute or relative, with any number of ..) or one that an earlier
// mount of the list brought in sends the mount to where the symlink points
// inside the rootfs, never onto the host. The host directory the symlinks
// name stays as it was, and what was mounted is undone on failure without
// touching it either.
func TestMountTargetsStayInsideRootfs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root (mount)")
	}
	for _, tc := range []struct {
		name string
		// link is the symlink made in the image at /evil (or in the second
		// layer when fromMount), given the host directory it aims at and the
		// rootfs path.
		link      func(outside, rootfs string) string
		fromMount bool   // the symlink comes from a bind mount at /mnt, the target goes through /mnt/evil
		target    string // the mount target, "" = default through the symlink
		want      func(outside string) string
	}{
		{
			name: "absolute symlink",
			link: func(outside, _ string) string { return outside },
			want: func(outside string) string { return outside + "/sub" },
		},
		{
			name: "relative symlink climbing out with ..",
			link: func(outside, rootfs string) string {
				rel, err := filepath.Rel(rootfs, outside)
				if err != nil {
					panic(err)
				}
				return rel // ../../outside: out of the rootfs on the host
			},
			// In the rootfs, / is the top: a .. there stays there.
			want: func(outside string) string { return "/outside/sub" },
		},
		{
			name: "symlink to a symlink",
			link: func(outside, _ string) string { return "hop" }, // /hop -> outside, made below
			want: func(outside string) string { return outside + "/sub" },
		},
		{
			name: "dot-dot chain in the target through the symlink",
			link: func(outside, _ string) string { return outside },
			// Cleaned as text first: /a/../evil/x/../sub is /evil/sub.
			target: "/a/../evil/x/../sub",
			want:   func(outside string) string { return outside + "/sub" },
		},
		{
			name:      "symlink brought in by an earlier mount of the list",
			link:      func(outside, _ string) string { return outside },
			fromMount: true,
			want:      func(outside string) string { return outside + "/sub" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Cleanup(func() { detachBelow(t, dir) })
			outside := filepath.Join(dir, "outside") // stands for the host's /etc
			image := filepath.Join(dir, "image")
			layer := filepath.Join(dir, "layer")
			rootfs := filepath.Join(dir, "bundle", "rootfs")
			for _, d := range []string{outside, image, layer, filepath.Join(image, "mnt")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			linkDir := image
			target := "/evil/sub"
			if tc.fromMount {
				linkDir = layer
				target = "/mnt/evil/sub"
			}
			if tc.target != "" {
				target = tc.target
			}
			if err := os.Symlink(tc.link(outside, rootfs), filepath.Join(linkDir, "evil")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(image, "hop")); err != nil {
				t.Fatal(err)
			}

			mounts := []*types.Mount{{Type: "bind", Source: image, Options: []string{"rbind", "rw"}}}
			if tc.fromMount {
				mounts = append(mounts, &types.Mount{Type: "bind", Source: layer, Target: "/mnt", Options: []string{"rbind", "rw"}})
			}
			mounts = append(mounts, &types.Mount{Type: "tmpfs", Source: "tmpfs", Target: target, Options: []string{"size=1m"}})
			err := mountRootfs(mounts, rootfs, nil)

			checkOutside := func() {
				t.Helper()
				if got := entries(t, outside); !slices.Equal(got, []string{"passwd"}) {
					t.Errorf("the host directory the symlink names was changed: it holds %q", got)
				}
				if ms := mountsBelow(t, outside); len(ms) > 0 {
					t.Errorf("mounted on the host directory the symlink names: %q", ms)
				}
			}
			checkOutside()
			if err != nil {
				t.Fatalf("mountRootfs: %v", err)
			}
			want := filepath.Join(rootfs, tc.want(outside))
			if ms := mountsBelow(t, rootfs); !slices.Contains(ms, want) {
				t.Errorf("tmpfs not mounted at %s inside the rootfs; mounts below the rootfs: %q", want, ms)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(want, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
				t.Errorf("%s is not the tmpfs (statfs type %#x, %v)", want, st.Type, err)
			}
			if err := unmountRootfs(rootfs); err != nil {
				t.Fatal(err)
			}
			if ms := mountsBelow(t, rootfs); len(ms) > 0 {
				t.Errorf("left mounted after unmountRootfs: %q", ms)
			}

			// A later mount that fails undoes the ones through the symlink,
			// inside the rootfs, and the host directory is still untouched.
			failing := append(slices.Clone(mounts), &types.Mount{Type: "bind", Source: filepath.Join(dir, "missing"), Target: "/x", Options: []string{"rbind"}})
			if err := mountRootfs(failing, rootfs, nil); err == nil {
				t.Fatal("a mount of a missing source succeeded")
			}
			checkOutside()
			if ms := mountsBelow(t, rootfs); len(ms) > 0 {
				t.Errorf("left mounted after a failed mountRootfs: %q", ms)
			}
		})
	}
}

// Targets without symlinks still work: a new nested mount point is created
// and an existing directory of the image is mounted over, and each mount goes
// on top of the ones before it.
func TestMountPlainTargets(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root (mount)")
	}
	dir := t.TempDir()
	t.Cleanup(func() { detachBelow(t, dir) })
	image := filepath.Join(dir, "image")
	data := filepath.Join(dir, "data")
	rootfs := filepath.Join(dir, "bundle", "rootfs")
	for _, d := range []string{filepath.Join(image, "etc"), data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := mountRootfs([]*types.Mount{
		{Type: "bind", Source: image, Options: []string{"rbind", "rw"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "etc", Options: []string{"size=1m"}},
		{Type: "bind", Source: data, Target: "/var/lib/data", Options: []string{"rbind", "ro"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "/var/lib/data/../../run", Options: []string{"size=1m", "nosuid"}},
	}, rootfs, nil)
	if err != nil {
		t.Fatalf("mountRootfs: %v", err)
	}
	got := mountsBelow(t, rootfs)
	for _, want := range []string{rootfs, rootfs + "/etc", rootfs + "/var/lib/data", rootfs + "/var/run"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s is not a mount point; mounts below the rootfs: %q", want, got)
		}
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "var/lib/data/hello")); err != nil || string(b) != "hi\n" {
		t.Errorf("bind mount content: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "var/lib/data/x"), nil, 0o644); err == nil {
		t.Error("wrote through a read-only bind mount")
	}
	if err := unmountRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if ms := mountsBelow(t, rootfs); len(ms) > 0 {
		t.Errorf("left mounted after unmountRootfs: %q", ms)
	}
}
