package task

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/mounts"
	"github.com/podv2/containerd-shim-pod-v2/pod"
)

// prepareMounts does the shim's part of a container's mounts, on the spec
// the pod has rewritten, before the runtime sees it:
//
//   - sysfs where the container cannot mount it (a user namespace that does
//     not own the network namespace) becomes a read-only bind of the host's
//     /sys (see pod.CanMountSysfs);
//   - read-only bind mounts become recursively read-only by the policy: the
//     container's annotation io.containerd.pod.v2.rro, else the handler's
//     treat_ro_mounts_as_rro, else IfPossible;
//   - id-mapped mounts are left to a runtime that makes them, else made and
//     staged by the shim (see stageIDMapped).
//
// The runtime's features are needed (and run once) only when one of these
// applies. Mounts staged for the container are released with
// pod.ReleaseMounts, once the runtime has made the container or its Create
// failed. Errors the container is at fault for are InvalidArgument.
func (s *Service) prepareMounts(ctx context.Context, id, bundle string, spec *specs.Spec, binary string, own shimOptions, p *pod.Pod) error {
	policy := own.RRO
	if v, ok := spec.Annotations[mounts.AnnotationRRO]; ok {
		var err error
		if policy, err = mounts.ParseRROPolicy(v); err != nil {
			return invalid("annotation %s of container %s: %v", mounts.AnnotationRRO, id, err)
		}
	}
	rro := policy != mounts.RRODisabled && slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool {
		return mounts.IsBind(m) && mounts.ReadOnly(m.Options)
	})
	idmap := slices.ContainsFunc(spec.Mounts, mounts.WantsIDMap)
	sysfs := false
	if slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Type == "sysfs" }) {
		can, err := pod.CanMountSysfs(spec)
		if err != nil {
			return fmt.Errorf("can container %s mount sysfs: %w", id, err)
		}
		sysfs = !can
	}
	if !rro && !idmap && !sysfs {
		return nil
	}
	f := s.features.get(ctx, binary, s.reaper)

	if sysfs {
		replaced := mounts.BindHostSysfs(spec, f.rro)
		slog.Info("sysfs cannot be mounted in the container's user namespace (it does not own the network namespace): the host's /sys is bound read-only instead",
			"id", id, "mounts", replaced, "recursively read-only", f.rro)
	}
	if rro {
		upgraded, plain, err := mounts.ApplyRRO(spec, policy, f.rroSupport())
		if err != nil {
			return invalid("container %s: %v", id, err)
		}
		if len(upgraded) > 0 {
			slog.Debug("read-only bind mounts made recursively read-only", "id", id, "mounts", upgraded, "policy", policy)
		}
		if len(plain) > 0 {
			why := f.rroWhyNot
			if f.rro {
				why = "their propagation is shared or slave"
			}
			slog.Info("read-only bind mounts left plain read-only: mounts below them stay writable", "id", id, "mounts", plain, "policy", policy, "why", why)
		}
	}
	if idmap {
		switch {
		case f.runtimeIDMap:
			slog.Debug("id-mapped mounts are the runtime's", "id", id)
		case !f.shimIDMap:
			return invalid("container %s asks for id-mapped mounts: the runtime does not make them and the kernel cannot (mount_setattr, Linux >= 5.12)", id)
		default:
			if err := stageIDMapped(id, bundle, spec, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// stageIDMapped makes, for a runtime that cannot (runc 1.1.5 ignores the
// request), each id-mapped mount the spec asks for: an id-mapped copy of the
// source (open_tree, mount_setattr MOUNT_ATTR_IDMAP with a user namespace of
// the mount's mappings: the pod's own when they are the pod's), attached in
// the pod's state dir, and the spec's mount becomes a plain bind of it. The
// container must have a user namespace; a file system that cannot be
// id-mapped is refused, naming the mount. What was staged is released by
// the caller (pod.ReleaseMounts), also when this fails.
func stageIDMapped(id, bundle string, spec *specs.Spec, p *pod.Pod) error {
	var uids, gids []specs.LinuxIDMapping
	userns := false
	if spec.Linux != nil {
		uids, gids = spec.Linux.UIDMappings, spec.Linux.GIDMappings
		userns = slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace })
	}
	dir, err := p.MountsDir(id)
	if err != nil {
		return err
	}
	// One user namespace per mapping, for all the mounts that share it.
	nss := map[string]*os.File{}
	defer func() {
		for _, f := range nss {
			f.Close()
		}
	}()
	for i, m := range spec.Mounts {
		if !mounts.WantsIDMap(m) {
			continue
		}
		if !userns {
			return invalid("container %s: mount %s asks to be id-mapped, but the container has no user namespace", id, m.Destination)
		}
		req, err := mounts.IDMapOf(m, uids, gids)
		if err != nil {
			return invalid("container %s: %v", id, err)
		}
		key := fmt.Sprint(req.UIDMappings, req.GIDMappings)
		ns, ok := nss[key]
		if !ok {
			if ns, err = p.UserNamespaceFor(req.UIDMappings, req.GIDMappings); err != nil {
				return fmt.Errorf("container %s: user namespace for id-mapped mount %s: %w", id, m.Destination, err)
			}
			nss[key] = ns
		}
		source := m.Source
		if !filepath.IsAbs(source) {
			source = filepath.Join(bundle, source)
		}
		staged := filepath.Join(dir, strconv.Itoa(i))
		if err := stageOne(source, staged, mounts.IsRecursiveBind(m), req.Recursive, ns); err != nil {
			if errors.Is(err, mounts.ErrIDMapUnsupported) || errors.Is(err, fs.ErrNotExist) {
				return invalid("container %s: id-mapped mount %s: %v", id, m.Destination, err)
			}
			return fmt.Errorf("container %s: id-mapped mount %s: %w", id, m.Destination, err)
		}
		spec.Mounts[i] = mounts.StagedIDMap(m, staged)
		slog.Debug("id-mapped mount made by the shim", "id", id, "mount", m.Destination, "source", source, "staged", staged)
	}
	return nil
}

// stageOne attaches an id-mapped copy of source at staged: a directory, or
// an empty file for a file's copy. The pod's state dir is 0700, root's: the
// mounts dir is searchable by all (0711), since runtimes bind the staged
// copy from the container's user namespace.
func stageOne(source, staged string, recursive, recursiveMap bool, userns *os.File) error {
	st, err := os.Stat(source)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(staged), 0o711); err != nil {
		return fmt.Errorf("staging dir: %w", err)
	}
	if st.IsDir() {
		err = os.Mkdir(staged, 0o700)
	} else {
		var f *os.File
		if f, err = os.OpenFile(staged, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o600); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("staging mount point: %w", err)
	}
	tree, err := mounts.CloneIDMapped(source, recursive, recursiveMap, false, userns)
	if err != nil {
		return err
	}
	defer tree.Close()
	target, err := os.OpenFile(staged, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open staging mount point: %w", err)
	}
	defer target.Close()
	return mounts.Attach(tree, target)
}
