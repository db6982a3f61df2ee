package task

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/mounts"
)

// containerd 2.x's overlayfs snapshotter, where the kernel can id-map
// mounts, no longer chowns a user-namespaced container's layers: the
// snapshot's mounts carry the options uidmap= and gidmap= (the container's
// mappings, "containerID:hostID:size" each, comma separated), which ask
// whoever mounts them for id-mapped layers. The kernel knows no such mount
// options ("mount overlay ... invalid argument"). The shim does what
// containerd's own mount code does:
//
//   - an overlay: the directory holding every lower layer is id-mapped
//     (read-only, recursively) onto a staging directory in the pod's state
//     dir, the overlay is mounted with its lower layers taken through it,
//     and the staging mount goes at once (the overlay keeps its layers);
//   - a bind (a snapshot of one layer): the bind is made from an id-mapped
//     copy of its source.
//
// The user namespace lending the mappings is the pod's own when they are
// the pod's (they are: CRI and ctr map the rootfs as the container).

// rootfsIDMap is what id-mapped rootfs layers need.
type rootfsIDMap struct {
	// stage is a directory for the container in the pod's private state
	// dir, made when needed.
	stage string
	// userns returns an open user namespace with the mappings.
	userns func(uids, gids []specs.LinuxIDMapping) (*os.File, error)
}

// idmapOptions takes uidmap= and gidmap= out of a mount's data options.
func idmapOptions(data []string) (uids, gids []specs.LinuxIDMapping, rest []string, err error) {
	for _, o := range data {
		key, value, _ := strings.Cut(o, "=")
		switch key {
		case "uidmap":
			if uids, err = parseIDMapList(value); err != nil {
				return nil, nil, nil, fmt.Errorf("option %q: %w", o, err)
			}
		case "gidmap":
			if gids, err = parseIDMapList(value); err != nil {
				return nil, nil, nil, fmt.Errorf("option %q: %w", o, err)
			}
		default:
			rest = append(rest, o)
		}
	}
	if (len(uids) == 0) != (len(gids) == 0) {
		return nil, nil, nil, errors.New("uidmap and gidmap must come together")
	}
	return uids, gids, rest, nil
}

// parseIDMapList reads "containerID:hostID:size[,containerID:hostID:size...]".
func parseIDMapList(s string) ([]specs.LinuxIDMapping, error) {
	var out []specs.LinuxIDMapping
	for _, one := range strings.Split(s, ",") {
		f := strings.Split(one, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("mapping %q is not containerID:hostID:size", one)
		}
		var n [3]uint32
		for i, x := range f {
			v, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("mapping %q: %w", one, err)
			}
			n[i] = uint32(v)
		}
		if n[2] == 0 {
			return nil, fmt.Errorf("mapping %q has size 0", one)
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	return out, nil
}

// mountIDMapped mounts m at mp with id-mapped layers (see above); data is
// m's options without flags, propagation, uidmap and gidmap.
func (idm *rootfsIDMap) mountIDMapped(m mountRequest, mp mountPoint, flags uintptr, data []string, uids, gids []specs.LinuxIDMapping) error {
	if idm == nil || idm.userns == nil {
		return errors.New("id-mapped layers (uidmap, gidmap) need a pod")
	}
	ns, err := idm.userns(uids, gids)
	if err != nil {
		return fmt.Errorf("user namespace for id-mapped layers: %w", err)
	}
	defer ns.Close()
	switch {
	case m.bind:
		return idm.bind(m.source, mp, flags, ns)
	case m.typ == "overlay":
		return idm.overlay(m.source, mp, flags, data, ns)
	}
	return fmt.Errorf("id-mapped layers of a %s mount: only overlay and bind mounts can have them", m.typ)
}

// bind attaches an id-mapped copy of source (recursive with rbind, and
// read-only with ro) at the mount point.
func (idm *rootfsIDMap) bind(source string, mp mountPoint, flags uintptr, ns *os.File) error {
	recursive := flags&unix.MS_REC != 0
	tree, err := mounts.CloneIDMapped(source, recursive, recursive, flags&unix.MS_RDONLY != 0, ns)
	if err != nil {
		return err
	}
	defer tree.Close()
	target, err := mp.open(true)
	if err != nil {
		return err
	}
	defer target.Close()
	return mounts.Attach(tree, target)
}

// overlay mounts the overlay with its lower layers id-mapped through a
// staging mount of their common directory. The lower layers are given
// relative to the staging directory (the mount runs there, see
// mountOverlayIn), so that many layers fit in a page of options.
func (idm *rootfsIDMap) overlay(source string, mp mountPoint, flags uintptr, data []string, ns *os.File) error {
	li := -1
	var lowers []string
	for i, o := range data {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			li, lowers = i, strings.Split(v, ":")
		}
	}
	if li < 0 {
		return errors.New("id-mapped overlay without lowerdir")
	}
	common := filepath.Dir(lowers[0])
	for _, l := range lowers[1:] {
		for common != "/" && !strings.HasPrefix(l, common+"/") {
			common = filepath.Dir(common)
		}
	}
	if common == "/" {
		return fmt.Errorf("the lower layers %q share no directory to id-map", lowers)
	}
	rel := make([]string, len(lowers))
	for i, l := range lowers {
		rel[i] = strings.TrimPrefix(l, common+"/")
	}

	if err := os.MkdirAll(idm.stage, 0o700); err != nil {
		return fmt.Errorf("staging dir for id-mapped layers: %w", err)
	}
	stage, err := os.MkdirTemp(idm.stage, "layers-")
	if err != nil {
		return fmt.Errorf("staging dir for id-mapped layers: %w", err)
	}
	defer os.Remove(stage)
	tree, err := mounts.CloneIDMapped(common, true, true, true, ns)
	if err != nil {
		return err
	}
	target, err := os.OpenFile(stage, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		tree.Close()
		return fmt.Errorf("open staging dir: %w", err)
	}
	err = mounts.Attach(tree, target)
	target.Close()
	tree.Close()
	if err != nil {
		return err
	}
	// The overlay holds its layers; the staging mount is not needed past
	// the mount call.
	defer unix.Unmount(stage, unix.MNT_DETACH)

	opts := append([]string(nil), data...)
	opts[li] = "lowerdir=" + strings.Join(rel, ":")
	return mp.do(true, func(dest string) error {
		return mountOverlayIn(stage, source, dest, flags, opts)
	})
}
