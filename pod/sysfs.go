//go:build linux

package pod

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CanMountSysfs tells whether a container, as its (rewritten) spec puts it,
// can mount sysfs: it must not be in a user namespace, or its user namespace
// must own its network namespace (the kernel checks CAP_SYS_ADMIN over the
// network namespace's owner). Ownership is read from the namespaces
// themselves (NS_GET_USERNS), never guessed from paths:
//
//   - no user namespace entry: the host's, which owns every network
//     namespace the shim can name;
//   - a new user namespace (no path): it owns only a network namespace the
//     runtime creates after it (a new one, no path);
//   - a user namespace by path: the owner of the network namespace (the
//     entry's path, or the host's without an entry) must be that one.
func CanMountSysfs(spec *specs.Spec) (bool, error) {
	if spec.Linux == nil {
		return true, nil
	}
	user, net, err := podNamespaces(spec.Linux.Namespaces)
	if err != nil {
		return false, err
	}
	switch {
	case user == nil:
		return true, nil
	case user.Path == "":
		return net != nil && net.Path == "", nil
	case net != nil && net.Path == "":
		// A new network namespace made by the runtime inside the joined
		// user namespace.
		return true, nil
	}
	netPath := hostNamespacePath(specs.NetworkNamespace)
	if net != nil {
		netPath = net.Path
	}
	f, err := os.Open(netPath)
	if err != nil {
		return false, fmt.Errorf("open network namespace %s: %w", netPath, err)
	}
	defer f.Close()
	owner, err := ownerOf(f)
	if err != nil {
		return false, fmt.Errorf("owner of network namespace %s: %w", netPath, err)
	}
	defer owner.Close()
	return sameNamespaceFile(owner, user.Path)
}
