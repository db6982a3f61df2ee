// Package mounts is what the shim does to a container's mounts beyond handing
// them to the OCI runtime: read-only bind mounts made recursively read-only
// by policy (RROPolicy), id-mapped mounts the shim makes itself when the
// runtime cannot (CloneIDMapped, Attach), a host /sys bound where sysfs cannot
// be mounted, and what the kernel supports of all this. It knows nothing of
// pods or of the task API: it reads and changes OCI mounts and calls the
// kernel's mount API (open_tree, mount_setattr, move_mount).
package mounts

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// IsBind tells whether an OCI mount is a bind mount: of type "bind", or with
// the bind or rbind option (as runc reads it).
func IsBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// IsRecursiveBind tells whether a bind mount takes the mounts below its
// source along (rbind).
func IsRecursiveBind(m specs.Mount) bool {
	return slices.Contains(m.Options, "rbind")
}

// ReadOnly tells whether the options make a mount read-only: the last of
// "ro" and "rw" wins, as in mount(8).
func ReadOnly(options []string) bool {
	ro := false
	for _, o := range options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}

// privatePropagation tells whether the options leave a mount's propagation
// private (the default of a bind mount in a container): no shared or slave.
func privatePropagation(options []string) bool {
	for _, o := range options {
		switch o {
		case "shared", "rshared", "slave", "rslave":
			return false
		}
	}
	return true
}

// without returns options without those in drop.
func without(options []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(options), func(o string) bool { return slices.Contains(drop, o) })
}
