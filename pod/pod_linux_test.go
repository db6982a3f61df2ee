//go:build linux

package pod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func userNetSpec(m []specs.LinuxIDMapping) *specs.Spec {
	return mkSpec(slicesClone(m), slicesClone(m), nsEntry(specs.PIDNamespace, ""), nsEntry(specs.UserNamespace, ""),
		nsEntry(specs.NetworkNamespace, ""), nsEntry(specs.MountNamespace, ""))
}

func TestPodJoinLeave(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Namespaces(); ok {
		t.Error("an empty pod has namespaces")
	}

	a := userNetSpec(podMaps)
	if err := p.Join("a", a); err != nil {
		t.Fatal(err)
	}
	noChildren(t)
	ns, ok := p.Namespaces()
	if !ok || !ns.Owned || ns.UserPath != filepath.Join(dir, "user") || ns.NetPath != filepath.Join(dir, "net") {
		t.Fatalf("pod namespaces = %+v", ns)
	}
	want := []specs.LinuxNamespace{nsEntry(specs.PIDNamespace, ""), nsEntry(specs.UserNamespace, ns.UserPath),
		nsEntry(specs.NetworkNamespace, ns.NetPath), nsEntry(specs.MountNamespace, "")}
	if !reflect.DeepEqual(a.Linux.Namespaces, want) {
		t.Errorf("first container's namespaces = %+v, want %+v", a.Linux.Namespaces, want)
	}

	// A container with other mappings is refused and does not join.
	c := userNetSpec(maps200)
	err = p.Join("c", c)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `container maps uid 0:200000:65536 but pod "pa" maps 0:100000:65536`) {
		t.Errorf("Join of a container with other mappings: %v", err)
	}
	if err := p.Join("a", userNetSpec(podMaps)); err == nil {
		t.Error("a second Join of the same container worked")
	}
	if err := p.Join("../x", userNetSpec(podMaps)); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Join of a bad id: %v", err)
	}

	b := userNetSpec(podMaps)
	if err := p.Join("b", b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.Linux.Namespaces, want) {
		t.Errorf("second container's namespaces = %+v", b.Linux.Namespaces)
	}
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "pa" || !reflect.DeepEqual(st.Containers, []string{"a", "b"}) || st.UserPath != ns.UserPath || len(st.Pins) != 2 {
		t.Errorf("state = %+v", st)
	}

	if last, err := p.Leave("a"); err != nil || last {
		t.Fatalf("Leave(a) = %v, %v; want not last", last, err)
	}
	if st, _ := Load(dir); st == nil || !reflect.DeepEqual(st.Containers, []string{"b"}) {
		t.Errorf("state after Leave(a) = %+v", st)
	}
	if mountFSType(t, ns.NetPath) != "nsfs" {
		t.Error("pins went with a container that was not the last")
	}
	if last, err := p.Leave("b"); err != nil || !last {
		t.Fatalf("Leave(b) = %v, %v; want last", last, err)
	}
	if n := mountsBelow(t, dir); n != 0 {
		t.Errorf("%d mounts under the state dir after the last Leave", n)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir after the last Leave: %v", err)
	}
	if last, err := p.Leave("b"); err != nil || !last {
		t.Errorf("Leave twice = %v, %v", last, err)
	}

	// The pod starts anew with the next container.
	if err := p.Join("d", mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""))); err != nil {
		t.Fatal(err)
	}
	if ns, _ := p.Namespaces(); ns.HasUser() || !ns.HasNet() {
		t.Errorf("renewed pod namespaces = %+v", ns)
	}
	if last, err := p.Leave("d"); err != nil || !last {
		t.Fatalf("Leave(d) = %v, %v", last, err)
	}
	noChildren(t)
}

func TestPodFirstContainerRefused(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	// A user namespace without mappings: nothing is created.
	if err := p.Join("a", mkSpec(nil, nil, nsEntry(specs.UserNamespace, ""))); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Join: %v, want ErrInvalidSpec", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir after a refused first container: %v", err)
	}
	if _, ok := p.Namespaces(); ok {
		t.Error("a refused first container left the pod namespaces")
	}
}

func TestPodHostNamespaces(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, _ := New("pa", dir, DirectRunner{})
	spec := mkSpec(nil, nil, nsEntry(specs.PIDNamespace, ""))
	if err := p.Join("a", spec); err != nil {
		t.Fatal(err)
	}
	if err := p.Join("b", mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""))); !errors.Is(err, ErrConflict) {
		t.Errorf("a private network in a host network pod: %v", err)
	}
	if n := mountsBelow(t, dir); n != 1 {
		t.Errorf("%d mounts for a pod without namespaces, want the dir's own", n)
	}
	if last, err := p.Leave("a"); !last || err != nil {
		t.Errorf("Leave = %v, %v", last, err)
	}
}

// delete after a crash: the shim is gone, its pins and state stay, and each
// container's delete forgets it; the last one cleans up.
func TestForget(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, _ := New("pa", dir, DirectRunner{})
	for _, id := range []string{"a", "b"} {
		if err := p.Join(id, userNetSpec(podMaps)); err != nil {
			t.Fatal(err)
		}
	}
	// The shim "dies" here: p is never used again.
	if last, err := Forget(dir, "a"); err != nil || last {
		t.Fatalf("Forget(a) = %v, %v; want not last", last, err)
	}
	if n := mountsBelow(t, dir); n != 3 {
		t.Errorf("%d mounts after forgetting one of two containers, want 3", n)
	}
	if last, err := Forget(dir, "a"); err != nil || last {
		t.Errorf("Forget(a) again = %v, %v; want not last", last, err)
	}
	if last, err := Forget(dir, "b"); err != nil || !last {
		t.Fatalf("Forget(b) = %v, %v; want last", last, err)
	}
	if n := mountsBelow(t, dir); n != 0 {
		t.Errorf("%d mounts after forgetting the last container", n)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir after the last Forget: %v", err)
	}
	if last, err := Forget(dir, "b"); err != nil || !last {
		t.Errorf("Forget after cleanup = %v, %v", last, err)
	}
}

// A shim that died between pinning and saving its state.
func TestForgetWithoutState(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	if _, err := CreatePinned(dir, DirectRunner{}, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps}); err != nil {
		t.Fatal(err)
	}
	if last, err := Forget(dir, "a"); err != nil || !last {
		t.Fatalf("Forget = %v, %v", last, err)
	}
	if n := mountsBelow(t, dir); n != 0 {
		t.Errorf("%d mounts left", n)
	}
}

func TestStateDir(t *testing.T) {
	got, err := StateDir("/run/x", "default", "pa")
	if err != nil || got != "/run/x/default/pa" {
		t.Errorf("StateDir = %q, %v", got, err)
	}
	for _, bad := range [][2]string{{"..", "pa"}, {"default", "../../etc"}, {"default", ""}, {"a/b", "pa"}} {
		if _, err := StateDir("/run/x", bad[0], bad[1]); !errors.Is(err, ErrInvalidID) {
			t.Errorf("StateDir(%q, %q) = %v, want ErrInvalidID", bad[0], bad[1], err)
		}
	}
}

// A second shim of a pod (start took the live shim for dead) finds the pod's
// state dir in use: it refuses, and leaves the live pod's pins and state as
// they were, where it used to tear them down as its own failed setup.
func TestPodStateDirOfAnotherShimIsLeftAlone(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	live, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Join("a", userNetSpec(podMaps)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Leave("a") })
	pins := mountsBelow(t, dir)

	second, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Join("b", userNetSpec(podMaps))
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Join in a second Pod of the same state dir: %v, want ErrInUse", err)
	}
	if got := mountsBelow(t, dir); got != pins {
		t.Errorf("mounts under the live pod's state dir: %d, were %d", got, pins)
	}
	st, err := Load(dir)
	if err != nil || !reflect.DeepEqual(st.Containers, []string{"a"}) {
		t.Errorf("the live pod's state after the refused Join: %+v, %v", st, err)
	}
	noChildren(t)
}
