package task

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// mountPoint is where one mount of a container's rootfs goes: a path inside
// the rootfs. The path comes from the request and leads through the image,
// which may hold symlinks anywhere (absolute, relative, with .. chains, or
// brought in by an earlier mount), so it is never joined to the rootfs as
// text: it is resolved inside the rootfs, as if the rootfs were /, to an
// O_PATH handle, and the mount is done on /proc/self/fd/N of that handle.
// Nothing can then swap the path between the check and the mount.
//
// It is resolved anew on each use: after a mount, the same path leads to the
// new mount on top (which a remount or a propagation change is for), and the
// rootfs itself may have been mounted over by an earlier mount of the list.
type mountPoint struct {
	rootfs string // the bundle's rootfs directory: the shim's own path
	path   string // a clean absolute path inside the rootfs, "/" for the rootfs itself
}

func (p mountPoint) String() string {
	if p.path == "/" {
		return p.rootfs
	}
	return fmt.Sprintf("%s (in rootfs %s)", p.path, p.rootfs)
}

// open resolves the mount point inside the rootfs and returns an O_PATH
// handle to it. With create, missing directories are made (0755), inside the
// rootfs too.
func (p mountPoint) open(create bool) (*os.File, error) {
	root, err := os.OpenFile(p.rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	if p.path == "/" {
		return root, nil
	}
	defer root.Close()
	h, err := pathrs.OpenatInRoot(root, p.path)
	if create && errors.Is(err, fs.ErrNotExist) {
		h, err = p.mkdirAll(root)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s inside the rootfs: %w", p.path, err)
	}
	return h, nil
}

// mkdirAll makes the mount point's missing directories. A symlink on the
// way that leads nowhere yet (the image's /var/run -> /run without a /run)
// is followed inside the rootfs, where the directories are then made:
// SecureJoin resolves the path lexically inside the rootfs, and
// MkdirAllHandle makes what is missing without leaving it, even if the tree
// changed in between.
func (p mountPoint) mkdirAll(root *os.File) (*os.File, error) {
	resolved, err := securejoin.SecureJoin(p.rootfs, p.path)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(p.rootfs, resolved)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("%s resolved to %s, outside the rootfs", p.path, resolved)
	}
	return pathrs.MkdirAllHandle(root, "/"+rel, 0o755)
}

// do runs fn with a /proc/self/fd path of the resolved mount point.
func (p mountPoint) do(create bool, fn func(dest string) error) error {
	h, err := p.open(create)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(fmt.Sprintf("/proc/self/fd/%d", h.Fd()))
}

// unmount detaches the mount on top of the mount point (and what is mounted
// below it). A mount point that is gone or not mounted on is fine.
func (p mountPoint) unmount() error {
	err := p.do(false, func(dest string) error {
		return unix.Unmount(dest, unix.MNT_DETACH)
	})
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", p, err)
}
