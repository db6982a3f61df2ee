//go:build linux

package pod

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A Leave that cannot take the state dir's lock fails before anything
// changes: the container stays in the pod, in memory and in state.json, and
// the pins stay, so that a retry does the whole Leave, releasing the pins
// with the last container.
func TestPodLeaveFailingLockLeavesThePodAsItWas(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := p.Join(id, mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""))); err != nil {
			t.Fatal(err)
		}
	}
	ns, _ := p.Namespaces()
	injected := errors.New("injected lock failure")
	failing := func(string) (func(), error) { return nil, injected }

	check := func(when string, want []string) {
		t.Helper()
		if got := p.Containers(); !slices.Equal(got, want) {
			t.Errorf("%s: pod containers %q, want %q", when, got, want)
		}
		st, err := Load(dir)
		if err != nil || !slices.Equal(st.Containers, want) {
			t.Errorf("%s: state %+v (%v), want containers %q", when, st, err, want)
		}
		if mountFSType(t, ns.NetPath) != "nsfs" {
			t.Errorf("%s: the network namespace pin is gone", when)
		}
	}

	// Not the last container.
	p.lockDir = failing
	if _, err := p.Leave("a"); !errors.Is(err, injected) {
		t.Fatalf("Leave(a) with a failing lock: %v, want the lock's error", err)
	}
	check("after a failed Leave(a)", []string{"a", "b"})
	p.lockDir = lockDir
	if last, err := p.Leave("a"); err != nil || last {
		t.Fatalf("Leave(a) again = %v, %v; want not last", last, err)
	}
	check("after Leave(a)", []string{"b"})

	// The last one.
	p.lockDir = failing
	if last, err := p.Leave("b"); !errors.Is(err, injected) || last {
		t.Fatalf("Leave(b) with a failing lock = %v, %v; want not last and the lock's error", last, err)
	}
	check("after a failed Leave(b)", []string{"b"})
	p.lockDir = lockDir
	if last, err := p.Leave("b"); err != nil || !last {
		t.Fatalf("Leave(b) again = %v, %v; want last", last, err)
	}
	if n := mountsBelow(t, dir); n != 0 {
		t.Errorf("%d mounts (pins) under the state dir after the retried last Leave", n)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir after the retried last Leave: %v", err)
	}
}
