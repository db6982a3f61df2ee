//go:build linux

package pod

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/mounts"
)

// mappedOwner is the owner, seen from the host, of a root-owned file through
// an id-mapped mount made with the user namespace ns: the host id that
// container id 0 maps to in ns.
func mappedOwner(t *testing.T, ns *os.File) uint32 {
	t.Helper()
	src, dst := t.TempDir(), t.TempDir()
	tree, err := mounts.CloneIDMapped(src, false, false, false, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	target, err := os.OpenFile(dst, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := mounts.Attach(tree, target); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dst, unix.MNT_DETACH)
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

func sameFile(t *testing.T, f *os.File, path string) bool {
	t.Helper()
	same, err := sameNamespaceFile(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return same
}

// A pod lends its own user namespace for id-mapped mounts of its mappings,
// and makes a throwaway one for other mappings, leaving no child behind.
func TestUserNamespaceFor(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	// A pod without a user namespace: a throwaway one.
	other, err := p.UserNamespaceFor(maps200, maps200)
	if err != nil {
		t.Fatal(err)
	}
	noChildren(t)
	if got := mappedOwner(t, other); got != 200000 {
		t.Errorf("throwaway user namespace maps root to %d, want 200000", got)
	}
	other.Close()

	if err := p.Join("a", userNetSpec(podMaps)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Leave("a") })
	own, err := p.UserNamespaceFor(podMaps, podMaps)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if !sameFile(t, own, filepath.Join(dir, "user")) {
		t.Error("the pod's mappings did not get the pod's own user namespace")
	}
	if got := mappedOwner(t, own); got != 100000 {
		t.Errorf("the pod's user namespace maps root to %d, want 100000", got)
	}
	other, err = p.UserNamespaceFor(maps200, maps200)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	noChildren(t)
	if sameFile(t, other, filepath.Join(dir, "user")) || mappedOwner(t, other) != 200000 {
		t.Error("other mappings got the pod's user namespace")
	}
	if _, err := p.UserNamespaceFor(nil, podMaps); err == nil {
		t.Error("no uid mappings: no error")
	}
	if d, err := p.MountsDir("a"); err != nil || d != filepath.Join(dir, "mounts", "a") {
		t.Errorf("MountsDir(a) = %s, %v", d, err)
	}
	if _, err := p.MountsDir("../a"); err == nil {
		t.Error("MountsDir of a bad id worked")
	}
}

// sysfs can be mounted where the container's user namespace owns its network
// namespace, as the kernel decides it: found from the namespaces themselves.
func TestCanMountSysfs(t *testing.T) {
	needRoot(t)
	check := func(name string, spec *specs.Spec, want bool) {
		t.Helper()
		got, err := CanMountSysfs(spec)
		if err != nil || got != want {
			t.Errorf("%s: CanMountSysfs = %v, %v; want %v", name, got, err, want)
		}
	}
	check("no user namespace", mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), true)
	check("host user namespace, host network", &specs.Spec{}, true)
	check("new user and network namespaces", userNetSpec(podMaps), true)
	check("new user namespace, host network", mkSpec(podMaps, podMaps, nsEntry(specs.UserNamespace, "")), false)
	check("new user namespace, the host's network by path",
		mkSpec(podMaps, podMaps, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "/proc/self/ns/net")), false)

	// A pod that made both: its user namespace owns its network namespace.
	both, err := New("both", stateDir(t), DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	s := userNetSpec(podMaps)
	if err := both.Join("a", s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { both.Leave("a") })
	check("pod's user and network namespaces", s, true)

	// A pod with a user namespace on the host network.
	hostNet, err := New("hostnet", stateDir(t), DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	s = mkSpec(podMaps, podMaps, nsEntry(specs.UserNamespace, ""), nsEntry(specs.MountNamespace, ""))
	if err := hostNet.Join("a", s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostNet.Leave("a") })
	check("pod's user namespace, host network", s, false)
	// ... and a network namespace that user namespace does not own.
	s2 := mkSpec(podMaps, podMaps, nsEntry(specs.UserNamespace, s.Linux.Namespaces[0].Path),
		nsEntry(specs.NetworkNamespace, filepath.Join(both.Dir(), "net")))
	check("pod's user namespace, another pod's network", s2, false)
	noChildren(t)
}
