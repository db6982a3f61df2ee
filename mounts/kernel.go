//go:build linux

package mounts

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// mountSetattr tells whether the kernel has mount_setattr(2) (Linux 5.12),
// which both recursively read-only and id-mapped mounts need. A call on an
// invalid fd fails with EBADF where the syscall exists, ENOSYS where not.
var mountSetattr = sync.OnceValue(func() bool {
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
})

// KernelRRO says whether the kernel can make a mount tree read-only
// (mount_setattr with MOUNT_ATTR_RDONLY and AT_RECURSIVE), and if not, why.
func KernelRRO() RROSupport {
	if !mountSetattr() {
		return RROSupport{Reason: "the kernel has no mount_setattr (Linux >= 5.12 needed)"}
	}
	return RROSupport{OK: true}
}

// KernelIDMap says whether the kernel can make id-mapped mounts
// (open_tree, mount_setattr with MOUNT_ATTR_IDMAP: Linux >= 5.12). Whether a
// file system supports them is known only when one is made.
func KernelIDMap() bool { return mountSetattr() }

// ErrIDMapUnsupported: the file system of a mount's source cannot be
// id-mapped.
var ErrIDMapUnsupported = errors.New("id-mapped mounts unsupported")

// CloneIDMapped makes a detached copy of the mount at source (and of the
// mounts below it, with recursive) whose ids are mapped through the user
// namespace userns: a file owned by id k on disk is seen as the id that k maps
// to in userns, and written back as k. With recursiveMap the mounts below are
// id-mapped too, else only the top one. The copy is read-only with readOnly
// (recursively with recursive). It returns the detached mount's fd (close it
// to drop the copy unless it was attached with Attach).
func CloneIDMapped(source string, recursive, recursiveMap, readOnly bool, userns *os.File) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, flags)
	if err != nil {
		return nil, fmt.Errorf("open_tree %s: %w", source, err)
	}
	tree := os.NewFile(uintptr(fd), source)
	setAttr := func(attr uint64, rec bool, ns int) error {
		at := uint(unix.AT_EMPTY_PATH)
		if rec {
			at |= unix.AT_RECURSIVE
		}
		a := &unix.MountAttr{Attr_set: attr, Userns_fd: uint64(ns)}
		return unix.MountSetattr(fd, "", at, a)
	}
	err = setAttr(unix.MOUNT_ATTR_IDMAP, recursive && recursiveMap, int(userns.Fd()))
	if errors.Is(err, unix.EINVAL) {
		// The file system does not allow id-mapped mounts (FS_ALLOW_IDMAP),
		// or a mount of the tree is id-mapped already.
		var st unix.Statfs_t
		what := "its file system"
		if unix.Fstatfs(fd, &st) == nil {
			what = fmt.Sprintf("its file system (type %#x)", st.Type)
		}
		tree.Close()
		return nil, fmt.Errorf("%w: %s cannot be id-mapped: %s does not support id-mapped mounts, or it is id-mapped already (mount_setattr: %v)",
			ErrIDMapUnsupported, source, what, err)
	}
	if err != nil {
		tree.Close()
		return nil, fmt.Errorf("id-map %s: mount_setattr: %w", source, err)
	}
	if readOnly {
		if err := setAttr(unix.MOUNT_ATTR_RDONLY, recursive, 0); err != nil {
			tree.Close()
			return nil, fmt.Errorf("make id-mapped %s read-only: mount_setattr: %w", source, err)
		}
	}
	return tree, nil
}

// Attach mounts the detached mount tree onto the file or directory open as
// target (an O_PATH handle will do): move_mount(2) between the two fds, so
// no path is looked up again.
func Attach(tree, target *os.File) error {
	err := unix.MoveMount(int(tree.Fd()), "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("move_mount %s onto %s: %w", tree.Name(), target.Name(), err)
	}
	return nil
}
