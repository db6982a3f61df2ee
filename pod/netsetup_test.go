package pod

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func withHooks(s *specs.Spec, h specs.Hooks) *specs.Spec {
	s.Hooks = &h
	return s
}

// A later member of a pod with a network namespace may not bring a hook that sets up a new network namespace of
// its own; every other combination joins the pod's network as before.
func TestCheckNetworkSetup(t *testing.T) {
	nerdctl := specs.Hook{Path: "/usr/local/bin/nerdctl", Args: []string{"nerdctl", "internal", "oci-hook", "createRuntime"}}
	for _, c := range []struct {
		name    string
		pod     *Namespaces
		spec    *specs.Spec
		refused bool
	}{
		{"new netns, createRuntime hook", netPod, withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), specs.Hooks{CreateRuntime: []specs.Hook{nerdctl}}), true},
		//lint:ignore SA1019 prestart is deprecated, and runtimes still run it.
		{"new netns, prestart hook", userNetPod, withHooks(mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")), specs.Hooks{Prestart: []specs.Hook{nerdctl}}), true},
		{"netns by path, createRuntime hook (nerdctl --net container:)", netPod, withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "/proc/42/ns/net")), specs.Hooks{CreateRuntime: []specs.Hook{nerdctl}, Poststop: []specs.Hook{nerdctl}}), false},
		{"new netns, no hooks (ctr)", netPod, mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), false},
		{"new netns, empty hooks", netPod, withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), specs.Hooks{}), false},
		{"new netns, only hooks that run later", netPod, withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), specs.Hooks{StartContainer: []specs.Hook{nerdctl}, Poststop: []specs.Hook{nerdctl}}), false},
		{"no netns entry, createRuntime hook", netPod, withHooks(mkSpec(nil, nil), specs.Hooks{CreateRuntime: []specs.Hook{nerdctl}}), false},
		{"host network pod (Rewrite refuses a new netns there itself)", hostPod, withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), specs.Hooks{CreateRuntime: []specs.Hook{nerdctl}}), false},
		{"no linux", netPod, withHooks(&specs.Spec{}, specs.Hooks{CreateRuntime: []specs.Hook{nerdctl}}), false},
	} {
		err := checkNetworkSetup("pa", c.pod, c.spec)
		if !c.refused {
			if err != nil {
				t.Errorf("%s: %v, want no error", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrConflict) {
			t.Errorf("%s: %v, want an ErrConflict", c.name, err)
			continue
		}
		for _, want := range []string{"/usr/local/bin/nerdctl", `pod "pa"`, c.pod.NetPath, "--net container:"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not name %q", c.name, err, want)
			}
		}
	}
}
