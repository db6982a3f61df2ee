package mounts

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An OCI mount asks for an id-mapped mount (runtime-spec 1.1) with
// uidMappings and gidMappings, or with the options "idmap" (the top mount)
// or "ridmap" (every mount of an rbind), which without mappings mean the
// container's own. containerd's CRI puts these on every volume of a
// Kubernetes pod with hostUsers: false. A runtime that supports them says so
// in its features (linux.mountExtensions.idmap.enabled); runc 1.1.5 ignores
// them. For such a runtime the shim makes the id-mapped mount itself, stages
// it, and hands the runtime a plain bind mount of the staged copy.

// IDMapRequest is what an OCI mount asks of an id-mapped mount.
type IDMapRequest struct {
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	Recursive                bool // ridmap: the mounts below are id-mapped too
}

// WantsIDMap tells whether the mount asks to be id-mapped.
func WantsIDMap(m specs.Mount) bool {
	return len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 ||
		slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap")
}

// IDMapOf reads an id-mapped mount request. Mappings default to the
// container's (uids, gids: the spec's linux.uidMappings and gidMappings);
// a mount with only one of the two, a non-bind mount, or a container without
// mappings to take is refused, naming the mount.
func IDMapOf(m specs.Mount, uids, gids []specs.LinuxIDMapping) (IDMapRequest, error) {
	r := IDMapRequest{UIDMappings: m.UIDMappings, GIDMappings: m.GIDMappings, Recursive: slices.Contains(m.Options, "ridmap")}
	switch {
	case !IsBind(m):
		return r, fmt.Errorf("mount %s (type %s) asks to be id-mapped: only bind mounts can be", m.Destination, m.Type)
	case (len(r.UIDMappings) == 0) != (len(r.GIDMappings) == 0):
		return r, fmt.Errorf("mount %s has uidMappings or gidMappings but not both", m.Destination)
	case len(r.UIDMappings) == 0 && (len(uids) == 0 || len(gids) == 0):
		return r, fmt.Errorf("mount %s asks for an id-mapped mount of the container's ids, but the container has no user namespace mappings", m.Destination)
	case len(r.UIDMappings) == 0:
		r.UIDMappings, r.GIDMappings = uids, gids
	}
	for _, x := range slices.Concat(r.UIDMappings, r.GIDMappings) {
		if x.Size == 0 {
			return r, fmt.Errorf("mount %s has an id mapping of size 0", m.Destination)
		}
	}
	return r, nil
}

// StagedIDMap is the mount the runtime gets in place of an id-mapped one
// that the shim made and staged at source: a bind mount of the staged tree
// (recursive when the original was), with the original's other options and
// without its mappings, which the staged tree already has.
func StagedIDMap(m specs.Mount, source string) specs.Mount {
	out := m
	out.Source = source
	out.Type = "bind"
	out.UIDMappings, out.GIDMappings = nil, nil
	out.Options = without(m.Options, "idmap", "ridmap")
	if !slices.Contains(out.Options, "bind") && !slices.Contains(out.Options, "rbind") {
		out.Options = append(out.Options, "bind")
	}
	return out
}
