package pod

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container that asks for a new network namespace and carries hooks that
// run in the runtime's namespace once the container's namespaces exist
// (createRuntime, or the older prestart: where the OCI spec places network
// setup) sets up its own network: nerdctl's default network is such a hook,
// which adds eth0 to the container's network namespace and removes it again
// at poststop or when its setup fails. In a pod every container joins the
// pod's network namespace instead of a new one, so such a hook would run in a
// namespace that its pod's first container already set up: it fails (eth0
// exists), and its cleanup deletes the other container's eth0.
//
// So the pod's first container may set up the pod's network that way (the
// namespace is new, and its hook runs in it once), and any later container
// that asks for its own setup is refused. A container that joins the pod's
// network by path (nerdctl's --net container:<first>, CRI), or that asks for
// a new network namespace without such hooks (ctr), joins the pod's network
// as before.

// networkSetupHook returns the first hook of spec that would set up a new
// network namespace of its own, and whether there is one.
func networkSetupHook(spec *specs.Spec) (specs.Hook, bool) {
	if spec.Linux == nil || spec.Hooks == nil {
		return specs.Hook{}, false
	}
	newNet := false
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path == "" {
			newNet = true
		}
	}
	if !newNet {
		return specs.Hook{}, false
	}
	//lint:ignore SA1019 prestart is deprecated, and runtimes still run it where they run createRuntime.
	for _, hooks := range [][]specs.Hook{spec.Hooks.CreateRuntime, spec.Hooks.Prestart} {
		if len(hooks) > 0 {
			return hooks[0], true
		}
	}
	return specs.Hook{}, false
}

// checkNetworkSetup refuses a container that would set up its own network in
// a pod whose network namespace is already there (see networkSetupHook).
// Errors wrap ErrConflict.
func checkNetworkSetup(podID string, ns *Namespaces, spec *specs.Spec) error {
	if !ns.HasNet() {
		return nil // a host-network pod: Rewrite refuses a new network namespace itself
	}
	hook, ok := networkSetupHook(spec)
	if !ok {
		return nil
	}
	return kindf(ErrConflict,
		"container asks for a network namespace of its own and an OCI hook to set it up at create (%s, as nerdctl's default network has), but pod %q already has a network namespace that its containers share (%s): the hook would set up the pod's network a second time, and its cleanup would remove the network of the containers already in the pod; join the pod's network instead (with nerdctl: --net container:<a running container of the pod>)",
		hook.Path, podID, ns.NetPath)
}
