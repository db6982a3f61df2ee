package mounts

import (
	"errors"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A read-only bind mount leaves the mounts below its source writable: a
// read-only /mnt with /mnt/usb mounted under it has a writable /mnt/usb. The
// runtime's "rro" option makes the whole tree read-only (mount_setattr with
// MOUNT_ATTR_RDONLY and AT_RECURSIVE, kernel >= 5.12; runc >= 1.1 lists it
// in `runc features`). RROPolicy says when the shim asks for it in place of
// plain "ro": the policy containerd's CRI once proposed
// (treat_ro_mounts_as_rro), applied here to every client.

// RROPolicy is whether read-only bind mounts are made recursively read-only.
type RROPolicy string

const (
	// RROEnabled: every read-only bind mount is recursively read-only, or
	// the container is refused.
	RROEnabled RROPolicy = "Enabled"
	// RROIfPossible (the default): recursively read-only when the kernel
	// and the runtime can, else plain read-only.
	RROIfPossible RROPolicy = "IfPossible"
	// RRODisabled: read-only bind mounts stay as asked.
	RRODisabled RROPolicy = "Disabled"
)

// AnnotationRRO overrides the runtime handler's policy for a container (set
// it on every container of a pod: CRI passes pod annotations listed in the
// handler's pod_annotations to each container).
const AnnotationRRO = "io.containerd.pod.v2.rro"

// ErrInvalidPolicy is a policy value that is none of the three.
var ErrInvalidPolicy = errors.New("invalid recursive read-only policy")

// ErrRROUnsupported: the policy asks for a recursively read-only mount that
// cannot be had.
var ErrRROUnsupported = errors.New("recursive read-only mounts unsupported")

// ParseRROPolicy reads a policy; "" is the default, IfPossible.
func ParseRROPolicy(s string) (RROPolicy, error) {
	switch p := RROPolicy(s); p {
	case "":
		return RROIfPossible, nil
	case RROEnabled, RROIfPossible, RRODisabled:
		return p, nil
	}
	return "", fmt.Errorf("%w %q: want %s, %s or %s", ErrInvalidPolicy, s, RROEnabled, RROIfPossible, RRODisabled)
}

// RROSupport is whether recursively read-only mounts can be had, and why not.
type RROSupport struct {
	OK     bool
	Reason string // why not, for messages: "the kernel has no mount_setattr (needs 5.12)", ...
}

// ApplyRRO makes the spec's read-only bind mounts recursively read-only by
// policy: "rro" is added next to "ro" (which stays, so that the top mount is
// read-only whatever the runtime makes of "rro"). A mount whose propagation
// is shared or slave is left alone under IfPossible (mounts propagated into
// it later would be writable: CRI refuses rro for such mounts too), and
// refused under Enabled, as is any read-only bind mount when support is
// missing. It returns the destinations of the mounts made recursively
// read-only and of those left plain read-only; nothing is changed when it
// fails (errors wrap ErrRROUnsupported).
func ApplyRRO(spec *specs.Spec, policy RROPolicy, support RROSupport) (upgraded, plain []string, err error) {
	if policy == RRODisabled {
		return nil, nil, nil
	}
	var todo []int
	for i, m := range spec.Mounts {
		if !IsBind(m) || !ReadOnly(m.Options) || slices.Contains(m.Options, "rro") {
			continue
		}
		switch {
		case !privatePropagation(m.Options) && policy == RROEnabled:
			return nil, nil, fmt.Errorf("%w: read-only bind mount %s (from %s) must be recursively read-only (policy %s), which needs private propagation, not %q",
				ErrRROUnsupported, m.Destination, m.Source, policy, m.Options)
		case !privatePropagation(m.Options):
			plain = append(plain, m.Destination)
		case !support.OK && policy == RROEnabled:
			return nil, nil, fmt.Errorf("%w: read-only bind mount %s (from %s) must be recursively read-only (policy %s), but %s",
				ErrRROUnsupported, m.Destination, m.Source, policy, support.Reason)
		case !support.OK:
			plain = append(plain, m.Destination)
		default:
			todo = append(todo, i)
		}
	}
	for _, i := range todo {
		m := &spec.Mounts[i]
		m.Options = append(slices.Clone(m.Options), "rro")
		upgraded = append(upgraded, m.Destination)
	}
	return upgraded, plain, nil
}
