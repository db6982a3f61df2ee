package task

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/podv2/containerd-shim-pod-v2/api/types"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// mountRootfs mounts the snapshotter's mounts at target, in order. A mount
// with a Target goes where that path leads inside the rootfs as mounted so
// far (see mountPoint): the image is hostile, and a symlink in it, or one an
// earlier mount brought in, must not send a mount onto the host. What was
// mounted is undone if one fails. Mounts with id-mapped layers (uidmap=,
// gidmap=) need idm (see rootfsIDMap).
func mountRootfs(mounts []*types.Mount, target string, idm *rootfsIDMap) (retErr error) {
	if err := os.MkdirAll(target, 0o711); err != nil {
		return fmt.Errorf("create rootfs dir: %w", err)
	}
	var done []mountPoint
	defer func() {
		if retErr != nil {
			for i := len(done) - 1; i >= 0; i-- {
				if err := done[i].unmount(); err != nil {
					slog.Warn("undo rootfs mount", "error", err)
				}
			}
		}
	}()
	for _, m := range mounts {
		mp := mountPoint{rootfs: target, path: filepath.Clean("/" + m.Target)}
		if err := mountOne(m, mp, idm); err != nil {
			return err
		}
		done = append(done, mp)
	}
	return nil
}

var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationFlags = map[string]uintptr{
	"private":    unix.MS_PRIVATE,
	"rprivate":   unix.MS_PRIVATE | unix.MS_REC,
	"shared":     unix.MS_SHARED,
	"rshared":    unix.MS_SHARED | unix.MS_REC,
	"slave":      unix.MS_SLAVE,
	"rslave":     unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE,
}

// parseMountOptions splits options into flags, propagation and the data string.
func parseMountOptions(options []string) (flags, propagation uintptr, data []string) {
	for _, o := range options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			propagation |= p
			continue
		}
		data = append(data, o)
	}
	return flags, propagation, data
}

// mountRequest is what mountOne was asked to mount.
type mountRequest struct {
	source, typ string
	bind        bool
}

func mountOne(m *types.Mount, mp mountPoint, idm *rootfsIDMap) error {
	flags, propagation, data := parseMountOptions(m.Options)
	if err := fault.Check("task.mount"); err != nil {
		return err
	}
	typ := m.Type
	if flags&unix.MS_BIND != 0 || typ == "bind" {
		typ = ""
		flags |= unix.MS_BIND
	}
	uids, gids, data, err := idmapOptions(data)
	if err != nil {
		return fmt.Errorf("mount %s %s on %s (options %q): %w", m.Type, m.Source, mp, strings.Join(m.Options, ","), err)
	}
	joined := strings.Join(data, ",")
	if len(uids) > 0 {
		req := mountRequest{source: m.Source, typ: m.Type, bind: flags&unix.MS_BIND != 0}
		err = idm.mountIDMapped(req, mp, flags, data, uids, gids)
	} else {
		err = mp.do(true, func(dest string) error {
			if typ == "overlay" && len(joined) > unix.Getpagesize()-512 {
				return mountOverlayRelative(m.Source, dest, flags, data)
			}
			return unix.Mount(m.Source, dest, typ, flags, joined)
		})
	}
	if err != nil {
		return fmt.Errorf("mount %s %s on %s (options %q): %w", m.Type, m.Source, mp, strings.Join(m.Options, ","), err)
	}
	// The mount point is resolved again from here on: it now leads to the
	// new mount, which the flags and propagation below are for.
	// A bind mount ignores most flags until remounted with them.
	const remountable = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if flags&unix.MS_BIND != 0 && flags&remountable != 0 {
		err := mp.do(false, func(dest string) error {
			return unix.Mount("", dest, "", flags|unix.MS_REMOUNT, "")
		})
		if err != nil {
			mp.unmount()
			return fmt.Errorf("remount %s with %q: %w", mp, strings.Join(m.Options, ","), err)
		}
	}
	if propagation != 0 {
		err := mp.do(false, func(dest string) error {
			return unix.Mount("", dest, "", propagation, "")
		})
		if err != nil {
			mp.unmount()
			return fmt.Errorf("set propagation of %s: %w", mp, err)
		}
	}
	return nil
}

// mountOverlayRelative mounts an overlay whose options would not fit in a
// page: the layer paths are made relative to their common parent, and the
// mount is done from there (see mountOverlayIn).
func mountOverlayRelative(source, dest string, flags uintptr, data []string) error {
	dir := commonLayerDir(data)
	if dir == "" || dir == "/" {
		return fmt.Errorf("overlay options too long (%d bytes) and layers share no parent", len(strings.Join(data, ",")))
	}
	rel := make([]string, len(data))
	for i, o := range data {
		key, value, ok := strings.Cut(o, "=")
		if !ok || !isLayerOption(key) {
			rel[i] = o
			continue
		}
		parts := strings.Split(value, ":")
		for j, p := range parts {
			if r, err := filepath.Rel(dir, p); err == nil {
				parts[j] = r
			}
		}
		rel[i] = key + "=" + strings.Join(parts, ":")
	}
	return mountOverlayIn(dir, source, dest, flags, rel)
}

// mountOverlayIn mounts an overlay from the directory dir, where relative
// layer paths of data lead: in a thread of its own whose working directory
// is not shared with the rest of the shim (unshare CLONE_FS). The thread is
// not returned to the Go scheduler afterwards.
func mountOverlayIn(dir, source, dest string, flags uintptr, data []string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its private cwd
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- unix.Mount(source, dest, "overlay", flags, strings.Join(data, ","))
	}()
	return <-errc
}

func isLayerOption(key string) bool {
	return key == "lowerdir" || key == "upperdir" || key == "workdir"
}

// commonLayerDir is the deepest directory holding every layer path.
func commonLayerDir(data []string) string {
	var paths []string
	for _, o := range data {
		key, value, ok := strings.Cut(o, "=")
		if ok && isLayerOption(key) {
			paths = append(paths, strings.Split(value, ":")...)
		}
	}
	if len(paths) == 0 {
		return ""
	}
	common := filepath.Dir(paths[0])
	for _, p := range paths[1:] {
		for common != "/" && !strings.HasPrefix(p, common+"/") {
			common = filepath.Dir(common)
		}
	}
	return common
}

// unmountRootfs undoes mountRootfs: every mount stacked on target goes.
func unmountRootfs(target string) error {
	return unmountAll(target)
}

func unmountAll(target string) error {
	for i := 0; i < 64; i++ {
		err := unix.Unmount(target, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 64 unmounts", target)
}
