package pod

import (
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Namespaces are compared by identity, never by path: two paths name one
// namespace when their nsfs files have the same device and inode. A path may
// name the host's own namespace: containerd's CRI makes every container of a
// hostNetwork pod join /proc/<pause pid>/ns/net, which is then the host's
// network namespace, and likewise ipc, uts and pid for hostIPC and hostPID
// pods. Such an entry is the host's namespace, as if the spec had no entry of
// that type, and is treated so everywhere: when the pod's namespaces are
// decided and adopted, when a container is checked against its pod, and in
// the spec runc gets (the entry is dropped, so runc inherits the namespace
// rather than joining a path that may stop naming it, and never joins its own
// user namespace, which setns refuses).
//
// "The host" is the shim's own namespace of each type: what runc, started by
// the shim, inherits when the spec has no entry of that type.

// hostComparable are the namespace types a spec may name the host's by path.
var hostComparable = map[specs.LinuxNamespaceType]string{
	specs.NetworkNamespace: "net",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.PIDNamespace:     "pid",
	specs.UserNamespace:    "user",
}

// hostNamespacePath is the shim's own namespace of type typ ("" for a type
// not in hostComparable). It is the calling thread's: a thread of the shim
// leaves the host's network namespace only while locked to the goroutine that
// creates a pod's (see pinNewNet), so the caller's thread is always in the
// host's, while the thread group leader (/proc/self) might be that thread.
func hostNamespacePath(typ specs.LinuxNamespaceType) string {
	name, ok := hostComparable[typ]
	if !ok {
		return ""
	}
	return "/proc/thread-self/ns/" + name
}

// sameNamespace tells whether two namespace paths name one namespace: files
// with the same device and inode (a pin and /proc/PID/ns/net of a process in
// it, say). It only stats the paths (it never opens them, so a FIFO cannot
// block it); a path that cannot be stat'ed is not the same.
func sameNamespace(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

// IsHostNamespace tells whether the entry names the host's namespace of its
// type by path (an entry without a path asks for a new namespace).
func IsHostNamespace(ns specs.LinuxNamespace) bool {
	host := hostNamespacePath(ns.Type)
	return ns.Path != "" && host != "" && sameNamespace(ns.Path, host)
}

// withoutHostNamespaces returns a copy of list without the entries that name
// the host's namespace of their type, and whether the user namespace entry was
// one of them.
func withoutHostNamespaces(list []specs.LinuxNamespace) (out []specs.LinuxNamespace, hostUser bool) {
	out = slices.DeleteFunc(slices.Clone(list), func(ns specs.LinuxNamespace) bool {
		if !IsHostNamespace(ns) {
			return false
		}
		if ns.Type == specs.UserNamespace {
			hostUser = true
		}
		return true
	})
	return out, hostUser
}
