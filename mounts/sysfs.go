package mounts

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mounting sysfs needs CAP_SYS_ADMIN over the network namespace the mounting
// process is in, so a container in a user namespace that does not own its
// network namespace (the host's network, or one made outside that user
// namespace) fails to mount /sys with EPERM. As podman does, the host's /sys
// is bound there instead, read-only all the way down.

// BindHostSysfs replaces every sysfs mount of the spec with a recursive bind
// of the host's /sys, with nosuid, nodev and noexec, read-only: recursively
// (rro) when rro, else plain ro. It returns the destinations replaced.
func BindHostSysfs(spec *specs.Spec, rro bool) []string {
	var replaced []string
	for i, m := range spec.Mounts {
		if m.Type != "sysfs" {
			continue
		}
		opts := []string{"rbind", "nosuid", "nodev", "noexec", "ro"}
		if rro {
			opts = append(opts, "rro")
		}
		spec.Mounts[i] = specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys", Options: opts}
		replaced = append(replaced, m.Destination)
	}
	return replaced
}
