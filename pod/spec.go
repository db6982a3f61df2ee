package pod

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Request is what the first container of a pod asks of the pod's namespaces.
// At most one way is chosen per namespace type: create it, adopt a path, or
// (user namespace only) derive it from the network namespace. A zero Request
// is a pod that shares the host's user and network namespaces.
type Request struct {
	// NewUser: create a user namespace with the mappings. NewNet: create a
	// network namespace; with NewUser, inside that user namespace.
	NewUser, NewNet bool
	// UserPath, NetPath: existing namespaces to adopt.
	UserPath, NetPath string
	// DeriveUser: the pod's user namespace is the one that owns NetPath
	// (ioctl NS_GET_USERNS); it must not be the host's.
	DeriveUser bool
	// The pod's id mappings, set whenever the pod has a user namespace.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
}

// Creates tells whether the request creates namespaces (CreatePinned) rather
// than adopting them (Adopt).
func (r Request) Creates() bool { return r.NewUser || r.NewNet }

// Decide reads what the first container of a pod asks for:
//
//   - a user namespace without a path, with mappings: the shim creates it, and
//     the network namespace inside it when the spec asks for a new one too;
//   - a network namespace without a path (and no user namespace): the shim
//     creates it;
//   - namespace paths: the shim adopts them; a user namespace without a path
//     next to a network namespace path is the user namespace owning that
//     network namespace;
//   - no network namespace entry: the pod uses the host network.
//
// An entry that names the host's namespace by path is the host's, as no entry
// (see IsHostNamespace): a hostNetwork pod's sandbox may name it so.
//
// The remaining combination, joining a user namespace by path while asking
// for a new network namespace, is refused: the network namespace would have
// to be created inside a user namespace the shim cannot enter (Go cannot
// setns into a user namespace, and runc joins the user namespace first).
// Errors wrap ErrInvalidSpec.
func Decide(spec *specs.Spec) (Request, error) {
	var req Request
	if spec == nil || spec.Linux == nil {
		return req, nil
	}
	list, _ := withoutHostNamespaces(spec.Linux.Namespaces)
	user, net, err := podNamespaces(list)
	if err != nil {
		return req, err
	}
	if user != nil {
		if err := checkMappings(spec.Linux.UIDMappings, spec.Linux.GIDMappings); err != nil {
			return req, err
		}
		req.UIDMappings = slices.Clone(spec.Linux.UIDMappings)
		req.GIDMappings = slices.Clone(spec.Linux.GIDMappings)
	}
	switch {
	case user == nil && net == nil:
	case user == nil:
		req.NewNet, req.NetPath = net.Path == "", net.Path
	case net == nil:
		req.NewUser, req.UserPath = user.Path == "", user.Path
	case user.Path == "" && net.Path == "":
		req.NewUser, req.NewNet = true, true
	case user.Path != "" && net.Path != "":
		req.UserPath, req.NetPath = user.Path, net.Path
	case user.Path == "":
		req.NetPath, req.DeriveUser = net.Path, true
	default:
		return Request{}, kindf(ErrInvalidSpec,
			"spec joins user namespace %s but asks for a new network namespace: the shim can only create a network namespace inside a user namespace it creates; name the network namespace too, or neither path",
			user.Path)
	}
	return req, nil
}

// podNamespaces finds the spec's user and network namespace entries (nil when
// absent). Two entries of one type make the spec invalid.
func podNamespaces(list []specs.LinuxNamespace) (user, net *specs.LinuxNamespace, err error) {
	for i := range list {
		ns := &list[i]
		var slot **specs.LinuxNamespace
		switch ns.Type {
		case specs.UserNamespace:
			slot = &user
		case specs.NetworkNamespace:
			slot = &net
		default:
			continue
		}
		if *slot != nil {
			return nil, nil, kindf(ErrInvalidSpec, "spec lists the %s namespace twice", ns.Type)
		}
		*slot = ns
	}
	return user, net, nil
}

// checkMappings refuses a user namespace without mappings: runc 1.1.5 needs
// them in the spec even when joining a user namespace by path, and the shim
// needs them to create one.
func checkMappings(uids, gids []specs.LinuxIDMapping) error {
	if len(uids) == 0 || len(gids) == 0 {
		return kindf(ErrInvalidSpec, "spec asks for a user namespace but has no linux.uidMappings or no linux.gidMappings (uid %s, gid %s)",
			formatMappings(uids), formatMappings(gids))
	}
	for _, m := range slices.Concat(uids, gids) {
		if m.Size == 0 {
			return kindf(ErrInvalidSpec, "spec has an id mapping of size 0 (%s)", formatMappings([]specs.LinuxIDMapping{m}))
		}
	}
	return nil
}

// Rewrite makes a container's spec join its pod's namespaces: the user and
// network namespaces by path, with the pod's id mappings (runc 1.1.5 wants
// the mappings even when joining by path). Other namespaces (pid, ipc, uts,
// mount, cgroup) stay as the container asked, except that an entry naming the
// host's namespace by path is dropped (it is the host's: see
// IsHostNamespace), and with a host user namespace entry the id mappings go
// too. ns nil is a pod without namespaces of its own. A container that
// contradicts its pod is refused with an error wrapping ErrConflict that names
// both values.
//
// The pod's first container is rewritten too: what it asked to be created
// was created by the shim, and it joins it like the others.
func Rewrite(podID string, ns *Namespaces, spec *specs.Spec) error {
	linux := spec.Linux
	if linux == nil {
		linux = &specs.Linux{}
	}
	list, hostUser := withoutHostNamespaces(linux.Namespaces)
	user, net, err := podNamespaces(list)
	if err != nil {
		return err
	}
	if ns == nil {
		ns = &Namespaces{}
	}

	// Check everything before changing anything: a refused spec is left as it was.
	if err := checkUser(podID, ns, user, linux); err != nil {
		return err
	}
	if err := checkNet(podID, ns, net); err != nil {
		return err
	}

	spec.Linux = linux
	linux.Namespaces = list
	if hostUser {
		// runc refuses id mappings without a user namespace entry.
		linux.UIDMappings, linux.GIDMappings = nil, nil
	}
	if ns.HasUser() {
		user.Path = ns.UserPath
		linux.UIDMappings = slices.Clone(ns.UIDMappings)
		linux.GIDMappings = slices.Clone(ns.GIDMappings)
	}
	if ns.HasNet() {
		net.Path = ns.NetPath
	}
	return nil
}

func checkUser(podID string, ns *Namespaces, user *specs.LinuxNamespace, l *specs.Linux) error {
	switch {
	case !ns.HasUser() && user == nil:
		return nil
	case !ns.HasUser():
		return kindf(ErrConflict, "container asks for %s but pod %q has no user namespace (it runs in the host's)",
			describe("user", user), podID)
	case user == nil:
		return kindf(ErrConflict, "container asks for the host user namespace but pod %q has user namespace %s",
			podID, ns.UserPath)
	case user.Path != "" && !sameNamespace(user.Path, ns.UserPath):
		return kindf(ErrConflict, "container joins user namespace %s but pod %q has user namespace %s",
			user.Path, podID, ns.UserPath)
	}
	if len(l.UIDMappings) > 0 && !sameMappings(l.UIDMappings, ns.UIDMappings) {
		return kindf(ErrConflict, "container maps uid %s but pod %q maps %s",
			formatMappings(l.UIDMappings), podID, formatMappings(ns.UIDMappings))
	}
	if len(l.GIDMappings) > 0 && !sameMappings(l.GIDMappings, ns.GIDMappings) {
		return kindf(ErrConflict, "container maps gid %s but pod %q maps %s",
			formatMappings(l.GIDMappings), podID, formatMappings(ns.GIDMappings))
	}
	return nil
}

func checkNet(podID string, ns *Namespaces, net *specs.LinuxNamespace) error {
	switch {
	case !ns.HasNet() && net == nil:
		return nil
	case !ns.HasNet():
		return kindf(ErrConflict, "container asks for %s but pod %q uses the host network",
			describe("network", net), podID)
	case net == nil:
		return kindf(ErrConflict, "container asks for the host network but pod %q has a private network namespace (%s)",
			podID, ns.NetPath)
	case net.Path != "" && !sameNamespace(net.Path, ns.NetPath):
		return kindf(ErrConflict, "container joins network namespace %s but pod %q has network namespace %s",
			net.Path, podID, ns.NetPath)
	}
	return nil
}

// describe names what a namespace entry asks for, for error messages.
func describe(kind string, ns *specs.LinuxNamespace) string {
	if ns.Path == "" {
		return "a new " + kind + " namespace"
	}
	return kind + " namespace " + ns.Path
}

// sameMappings compares two mapping lists as sets.
func sameMappings(a, b []specs.LinuxIDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	return slices.Equal(sortedMappings(a), sortedMappings(b))
}

func sortedMappings(m []specs.LinuxIDMapping) []specs.LinuxIDMapping {
	s := slices.Clone(m)
	slices.SortFunc(s, func(x, y specs.LinuxIDMapping) int {
		return cmp.Or(cmp.Compare(x.ContainerID, y.ContainerID), cmp.Compare(x.HostID, y.HostID), cmp.Compare(x.Size, y.Size))
	})
	return s
}

// formatMappings writes mappings as containerID:hostID:size, comma separated,
// the form of ctr's --uidmap.
func formatMappings(m []specs.LinuxIDMapping) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, len(m))
	for i, x := range m {
		parts[i] = fmt.Sprintf("%d:%d:%d", x.ContainerID, x.HostID, x.Size)
	}
	return strings.Join(parts, ",")
}
