package pod

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Shared is what a sandbox's pod gives each container that joins it besides
// its user and network namespaces: what the pause container and CRI gave
// containers before the shim was the sandbox.
type Shared struct {
	// IPCPath and UTSPath are namespaces of the pod (its own process's) that
	// a container joins when its spec asks for a new namespace of that type;
	// a spec that names a path (CRI names the pod's), or has none (the
	// host's), is left as it is. "" shares nothing. The PID namespace is not
	// shared this way: a Kubernetes pod's containers have their own unless
	// the pod shares it, and then CRI names it.
	IPCPath, UTSPath string
	// Mounts are added to a container's spec where it has no mount at their
	// destination; at /dev/shm, the default private tmpfs of containerd's
	// specs (source "shm") is replaced by the pod's. Bind mounts of files
	// (not /dev/shm) are made read-only for a container whose root is.
	Mounts []specs.Mount
}

// apply rewrites a joining container's spec (see Shared).
func (s Shared) apply(spec *specs.Spec) {
	if spec.Linux != nil {
		for i := range spec.Linux.Namespaces {
			ns := &spec.Linux.Namespaces[i]
			switch {
			case ns.Path != "":
			case ns.Type == specs.IPCNamespace && s.IPCPath != "":
				ns.Path = s.IPCPath
			case ns.Type == specs.UTSNamespace && s.UTSPath != "":
				ns.Path = s.UTSPath
			}
		}
	}
	readonly := spec.Root != nil && spec.Root.Readonly
	for _, m := range s.Mounts {
		m.Options = slices.Clone(m.Options)
		if readonly && m.Destination != devShm {
			m.Options = append(m.Options, "ro")
		}
		i := slices.IndexFunc(spec.Mounts, func(have specs.Mount) bool { return have.Destination == m.Destination })
		switch {
		case i < 0:
			spec.Mounts = append(spec.Mounts, m)
		case m.Destination == devShm && isDefaultShm(spec.Mounts[i]):
			spec.Mounts[i] = m
		}
	}
}

const devShm = "/dev/shm"

// isDefaultShm tells containerd's default /dev/shm (a tmpfs of the
// container's own) from a mount the client chose.
func isDefaultShm(m specs.Mount) bool {
	return m.Type == "tmpfs" && m.Source == "shm"
}
