//go:build linux

package pod

import (
	"errors"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The first container of a pod may set up the pod's network with a hook; a later one that would do it again is
// refused and the pod is unchanged; one without the hook joins.
func TestPodJoinNetworkSetup(t *testing.T) {
	needRoot(t)
	hook := specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/usr/local/bin/nerdctl"}}}
	p, err := New("pa", stateDir(t), DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Join("a", withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), hook)); err != nil {
		t.Fatalf("first container with a network hook: %v", err)
	}
	before, _ := p.Namespaces()
	err = p.Join("b", withHooks(mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), hook))
	if !errors.Is(err, ErrConflict) {
		t.Errorf("second container with a network hook: %v, want an ErrConflict", err)
	}
	if after, _ := p.Namespaces(); !reflect.DeepEqual(before, after) || !reflect.DeepEqual(p.Containers(), []string{"a"}) {
		t.Errorf("the refused container changed the pod: %+v %v", after, p.Containers())
	}
	spec := mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""))
	if err := p.Join("c", spec); err != nil {
		t.Fatalf("a plain member: %v", err)
	}
	if got := spec.Linux.Namespaces[0].Path; got != before.NetPath {
		t.Errorf("plain member's network namespace %q, want the pod's %q", got, before.NetPath)
	}
	for _, id := range []string{"a", "c"} {
		if _, err := p.Leave(id); err != nil {
			t.Fatal(err)
		}
	}
	noChildren(t)
}
