package task

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Id-mapped layers. For a container of a user-namespaced pod, containerd 2.x's
// overlay snapshotter (on a kernel with id-mapped mounts) leaves the image's
// layers owned by the host's ids and adds uidmap= and gidmap= to the overlay's
// options: whoever mounts it maps the lower layers into the container's user
// namespace. The kernel knows no such options: the layers' common parent is
// bind-mounted read-only and id-mapped (mount_setattr MOUNT_ATTR_IDMAP) with
// the pod's user namespace, the overlay is mounted from there, and the
// id-mapped mount goes again (the overlay holds what it needs). That mount is
// made in tmpParent (the bundle), next to the rootfs: the layers are the
// snapshotter's, outside the image.

// idmapOptions takes uidmap= and gidmap= out of a mount's data options.
func idmapOptions(data []string) (rest []string, uidmap, gidmap string) {
	for _, o := range data {
		if v, ok := strings.CutPrefix(o, "uidmap="); ok {
			uidmap = v
		} else if v, ok := strings.CutPrefix(o, "gidmap="); ok {
			gidmap = v
		} else {
			rest = append(rest, o)
		}
	}
	return rest, uidmap, gidmap
}

// parseIDMap reads containerd's container:host:size[,...] mapping form.
func parseIDMap(s string) ([]specs.LinuxIDMapping, error) {
	var out []specs.LinuxIDMapping
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("id mapping %q: want container:host:size", part)
		}
		var n [3]uint32
		for i, v := range f {
			x, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id mapping %q: %w", part, err)
			}
			n[i] = uint32(x)
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	return out, nil
}

// idmapUserns is the user namespace that id-mapped layers are mapped with:
// the container's (its pod's), which must have the layers' mappings.
type idmapUserns struct {
	path       string
	uids, gids []specs.LinuxIDMapping
}

// usernsOf is the user namespace a (rewritten) spec joins, "" if none.
func usernsOf(spec *specs.Spec) idmapUserns {
	if spec.Linux == nil {
		return idmapUserns{}
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return idmapUserns{path: ns.Path, uids: spec.Linux.UIDMappings, gids: spec.Linux.GIDMappings}
		}
	}
	return idmapUserns{}
}

// mountIDMappedOverlay mounts an overlay whose lower layers are to be
// id-mapped. data is the overlay's options without uidmap and gidmap.
func mountIDMappedOverlay(source, dest, tmpParent string, flags uintptr, data []string, uidmap, gidmap string, userns idmapUserns) error {
	uids, err := parseIDMap(uidmap)
	if err != nil {
		return err
	}
	gids, err := parseIDMap(gidmap)
	if err != nil {
		return err
	}
	if userns.path == "" {
		return fmt.Errorf("id-mapped layers (uidmap=%s) for a container without a user namespace", uidmap)
	}
	if !slices.Equal(uids, userns.uids) || !slices.Equal(gids, userns.gids) {
		return fmt.Errorf("id-mapped layers (uidmap=%s gidmap=%s) do not map as the container's user namespace %s does",
			uidmap, gidmap, userns.path)
	}
	i := slices.IndexFunc(data, func(o string) bool { return strings.HasPrefix(o, "lowerdir=") })
	if i < 0 {
		return errors.New("id-mapped overlay without lowerdir")
	}
	lowers := strings.Split(strings.TrimPrefix(data[i], "lowerdir="), ":")
	common := commonLayerDir([]string{data[i]})
	if common == "" || common == "/" {
		return fmt.Errorf("id-mapped layers share no parent: %v", lowers)
	}
	tmp, err := os.MkdirTemp(tmpParent, ".idmapped-layers-")
	if err != nil {
		return fmt.Errorf("id-mapped layers: %w", err)
	}
	defer os.Remove(tmp)
	if err := idmapBind(common, tmp, userns.path); err != nil {
		return fmt.Errorf("id-map layers %s with %s: %w", common, userns.path, err)
	}
	defer unmountAll(tmp)
	mapped := make([]string, len(lowers))
	for j, l := range lowers {
		rel, err := filepath.Rel(common, l)
		if err != nil {
			return err
		}
		mapped[j] = filepath.Join(tmp, rel)
	}
	opts := slices.Clone(data)
	opts[i] = "lowerdir=" + strings.Join(mapped, ":")
	if joined := strings.Join(opts, ","); len(joined) > unix.Getpagesize()-512 {
		return mountOverlayRelative(source, dest, flags, opts)
	}
	return unix.Mount(source, dest, "overlay", flags, strings.Join(opts, ","))
}

// idmapBind mounts src on dest, read-only and id-mapped with the user
// namespace at usernsPath.
func idmapBind(src, dest, usernsPath string) error {
	userns, err := os.Open(usernsPath)
	if err != nil {
		return err
	}
	defer userns.Close()
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("mount_setattr idmap: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dest, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", dest, err)
	}
	return nil
}
