//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// DefaultRoot is where pods' state directories live unless the shim is told
// otherwise: one directory per pod, named by namespace and group key.
const DefaultRoot = "/run/containerd/io.containerd.pod.v2"

// StateDir is the state directory of the pod with group key key in the
// containerd namespace namespace, under root. Both must be valid ids, so the
// path cannot escape root.
func StateDir(root, namespace, key string) (string, error) {
	if err := ValidateID(namespace); err != nil {
		return "", fmt.Errorf("state dir of pod %s: namespace: %w", key, err)
	}
	if err := ValidateID(key); err != nil {
		return "", fmt.Errorf("state dir of pod in namespace %s: pod key: %w", namespace, err)
	}
	return filepath.Join(root, namespace, key), nil
}

// checkDir refuses a state directory path that is relative or the root: the
// cleanup removes the directory recursively.
func checkDir(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) == "/" {
		return fmt.Errorf("pod state dir %q: must be an absolute path below /", dir)
	}
	return nil
}

// PrepareStateDir creates dir (0700) and makes it a private bind mount of
// itself, so the namespace pins mounted in it do not propagate to other mount
// namespaces (a propagated pin would keep a pod's namespaces alive after the
// pod). The self bind mount itself still propagates once if the parent mount
// is shared; that copy pins nothing and goes when the directory is removed.
// Calling it again on a prepared dir changes nothing.
func PrepareStateDir(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pod state dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("create pod state dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("create pod state dir: %w", err)
	}
	mounted, err := isMountPoint(real)
	if err != nil {
		return fmt.Errorf("prepare pod state dir %s: %w", dir, err)
	}
	if !mounted {
		if err := unix.Mount(real, real, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount pod state dir %s onto itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", real, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make pod state dir %s private: %w", dir, err)
	}
	return nil
}

// CleanupStateDir unmounts every pin in dir and dir's own bind mount, then
// removes dir. It needs no state file, so it also cleans up after a shim that
// died while pinning; a missing dir is already clean.
func CleanupStateDir(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean up pod state dir: %w", err)
	}
	if err := unmountAll(real); err != nil {
		return fmt.Errorf("clean up pod state dir %s: %w", dir, err)
	}
	if err := os.RemoveAll(real); err != nil {
		return fmt.Errorf("clean up pod state dir: %w", err)
	}
	return nil
}

// unmountAll detaches every mount at or below dir, deepest first, until none
// is left (mounts can be stacked).
func unmountAll(dir string) error {
	for range 16 {
		ms, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		// Later mounts are listed later; undo them first, dir itself last.
		slices.Reverse(ms)
		slices.SortStableFunc(ms, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
		for _, m := range ms {
			if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil &&
				!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
			}
		}
	}
	return fmt.Errorf("mounts under %s keep coming back", dir)
}

// unpin detaches whatever is mounted on a pin file (stacked mounts too) and
// removes the file. A pin already gone is fine.
func unpin(path string) error {
	for range 16 {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not a mount point (any more)
		}
		if err != nil {
			return fmt.Errorf("unmount pin %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pin %s: %w", path, err)
	}
	return nil
}

// pin bind-mounts the namespace file f onto a new empty file at path. The
// file is created exclusively: pinning twice in one place is a bug.
func pin(f *os.File, path string) error {
	if err := fault.Check("pod.pin"); err != nil {
		return err
	}
	pf, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("create pin: %w", err)
	}
	pf.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("bind mount namespace onto pin %s: %w", path, err)
	}
	return nil
}
