//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// ioctls on namespace files (linux/nsfs.h).
const (
	nsGetUserns = 0xb701 // NS_GET_USERNS: a new fd of the owning user namespace
	nsGetNstype = 0xb703 // NS_GET_NSTYPE: the CLONE_NEW* type of the namespace
)

// Adopt takes the namespaces a spec names by path as the pod's: it checks
// that each path is a namespace of the right type, holds an open reference
// to it for as long as the shim lives, and, with DeriveUser, pins the user
// namespace that owns the network namespace in dir (prepared with
// PrepareStateDir). Adopted paths are never unmounted or removed by the
// shim.
//
// A path that is the host's namespace of its type (the shim's own, compared by
// identity on the opened file) is not adopted: the pod uses the host's, as if
// the path were not given. Deriving a user namespace from the host's network
// namespace is refused.
//
// The mappings are the spec's: an adopted user namespace is not checked
// against them (no process may be in it to read its uid_map from).
func Adopt(dir string, req Request) (_ *Namespaces, retErr error) {
	ns := &Namespaces{}
	defer func() {
		if retErr != nil {
			ns.Release()
		}
	}()
	var netF, userF *os.File
	var err error
	if req.NetPath != "" {
		if netF, err = adoptNamespace(ns, req.NetPath, specs.NetworkNamespace, !req.DeriveUser); err != nil {
			return nil, err
		}
		if netF != nil {
			ns.NetPath = req.NetPath
		}
	}
	if req.UserPath != "" {
		if userF, err = adoptNamespace(ns, req.UserPath, specs.UserNamespace, true); err != nil {
			return nil, err
		}
		if userF != nil {
			ns.UserPath = req.UserPath
		}
	}
	if err := fault.Check("pod.adopt"); err != nil {
		return nil, err
	}

	switch {
	case req.DeriveUser && netF == nil:
		return nil, fmt.Errorf("adopt pod namespaces: deriving the user namespace needs a network namespace path")
	case req.DeriveUser:
		owner, err := ownerOf(netF)
		if err != nil {
			return nil, fmt.Errorf("find the user namespace owning network namespace %s: %w", req.NetPath, err)
		}
		ns.held = append(ns.held, owner)
		if host, err := sameNamespaceFile(owner, hostNamespacePath(specs.UserNamespace)); err != nil {
			return nil, err
		} else if host {
			return nil, kindf(ErrInvalidSpec,
				"spec asks for a new user namespace but names network namespace %s, which is owned by the host's user namespace: runc joins the user namespace first and then cannot join it (setns EPERM); leave the network namespace path out to have the shim create both",
				req.NetPath)
		}
		if err := PrepareStateDir(dir); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, userPin)
		if err := pin(owner, path); err != nil {
			return nil, fmt.Errorf("pin the user namespace owning %s: %w", req.NetPath, err)
		}
		ns.Pins = append(ns.Pins, path)
		ns.UserPath = path
	case userF != nil && netF != nil:
		owner, err := ownerOf(netF)
		if err != nil {
			return nil, fmt.Errorf("find the user namespace owning network namespace %s: %w", req.NetPath, err)
		}
		same, err := sameNamespaceFile(owner, req.UserPath)
		owner.Close()
		if err != nil {
			return nil, err
		}
		if !same {
			return nil, kindf(ErrInvalidSpec,
				"network namespace %s is not owned by user namespace %s: runc joins the user namespace first and then cannot join the network namespace (setns EPERM)",
				req.NetPath, req.UserPath)
		}
	}
	if ns.UserPath != "" {
		ns.UIDMappings = slices.Clone(req.UIDMappings)
		ns.GIDMappings = slices.Clone(req.GIDMappings)
	}
	return ns, nil
}

// adoptNamespace opens the namespace at path, checks its type and holds it in
// ns. With hostIsNone, a path that is the host's namespace of that type is
// not held and the file is nil: the pod uses the host's.
func adoptNamespace(ns *Namespaces, path string, typ specs.LinuxNamespaceType, hostIsNone bool) (*os.File, error) {
	f, err := openNamespace(path, cloneFlag[typ])
	if err != nil {
		return nil, err
	}
	if hostIsNone {
		host, err := sameNamespaceFile(f, hostNamespacePath(typ))
		if err != nil {
			f.Close()
			return nil, err
		}
		if host {
			f.Close()
			return nil, nil
		}
	}
	ns.held = append(ns.held, f)
	return f, nil
}

// cloneFlag is the CLONE_NEW* type of the namespaces a pod adopts.
var cloneFlag = map[specs.LinuxNamespaceType]int{
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
}

// openNamespace opens the namespace file at path, which a spec names, and
// checks that it is a namespace of type typ. Anything may be at that path,
// and it is checked without blocking: a plain open of a fifo waits for a
// writer, forever, under the pod's lock. So the path is opened O_PATH (which
// opens nothing but the name), fstatfs must find nsfs, and only then is the
// very file reopened through /proc/self/fd for the NS_GET_NSTYPE ioctl
// (which an O_PATH descriptor cannot take). Whatever is not a namespace of
// the right type is an invalid spec naming the path.
func openNamespace(path string, typ int) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, kindf(ErrInvalidSpec, "namespace path %s: %v", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("adopt namespace %s: %w", path, err)
	}
	handle := os.NewFile(uintptr(fd), path)
	defer handle.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return nil, fmt.Errorf("adopt namespace %s: fstatfs: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		what := "a file"
		if fi, err := handle.Stat(); err == nil {
			what = fileKind(fi.Mode())
		}
		return nil, kindf(ErrInvalidSpec, "%s is not a namespace: it is %s (file system type %#x, not nsfs)", path, what, sfs.Type)
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt namespace %s: reopen: %w", path, err)
	}
	got, err := unix.IoctlRetInt(int(f.Fd()), nsGetNstype)
	if err != nil {
		f.Close()
		return nil, kindf(ErrInvalidSpec, "%s is not a namespace: %v", path, err)
	}
	if got != typ {
		f.Close()
		return nil, kindf(ErrInvalidSpec, "%s is a %s namespace, not a %s namespace", path, nsTypeName(got), nsTypeName(typ))
	}
	return f, nil
}

// fileKind names what a mode says a file is, for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a fifo"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a file"
}

func nsTypeName(typ int) string {
	switch typ {
	case unix.CLONE_NEWUSER:
		return "user"
	case unix.CLONE_NEWNET:
		return "network"
	case unix.CLONE_NEWNS:
		return "mount"
	case unix.CLONE_NEWPID:
		return "pid"
	case unix.CLONE_NEWIPC:
		return "ipc"
	case unix.CLONE_NEWUTS:
		return "uts"
	case unix.CLONE_NEWCGROUP:
		return "cgroup"
	case unix.CLONE_NEWTIME:
		return "time"
	}
	return fmt.Sprintf("type %#x", typ)
}

// ownerOf returns the user namespace owning the namespace open as f.
func ownerOf(f *os.File) (*os.File, error) {
	fd, err := unix.IoctlRetInt(int(f.Fd()), nsGetUserns)
	if err != nil {
		return nil, fmt.Errorf("ioctl NS_GET_USERNS: %w", err)
	}
	return os.NewFile(uintptr(fd), "userns"), nil
}

// Owner is the inode of the user namespace that owns the namespace at path.
func Owner(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	owner, err := ownerOf(f)
	if err != nil {
		return 0, fmt.Errorf("owner of %s: %w", path, err)
	}
	defer owner.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(owner.Fd()), &st); err != nil {
		return 0, fmt.Errorf("owner of %s: %w", path, err)
	}
	return st.Ino, nil
}

// sameNamespaceFile tells whether the open namespace f is the one at path.
func sameNamespaceFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
