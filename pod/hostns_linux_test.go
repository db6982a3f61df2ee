//go:build linux

package pod

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostProcess starts a child in the host's namespaces (a pause container of a host-namespace pod, say) and returns
// its pid; it is killed and reaped when the test ends.
func hostProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(needTool(t, "sleep"), "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// pinAgain bind-mounts the namespace at path onto a second file, another path to the same namespace.
func pinAgain(t *testing.T, path string) string {
	t.Helper()
	dir := stateDir(t)
	if err := PrepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other := filepath.Join(dir, "again")
	if err := pin(f, other); err != nil {
		t.Fatal(err)
	}
	return other
}

// newNetNamespace is a network namespace of a pod of its own (created and pinned), not the host's.
func newNetNamespace(t *testing.T) *Namespaces {
	t.Helper()
	ns, err := CreatePinned(stateDir(t), DirectRunner{}, Request{NewNet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Release() })
	return ns
}

// The host's namespace is recognised by identity under any path: /proc/self, another host process's /proc/PID,
// a bind-mounted pin; never another namespace, another type's, or a file that is not a namespace (a FIFO is only
// stat'ed, never opened, so it cannot block).
func TestIsHostNamespace(t *testing.T) {
	needRoot(t)
	pid := hostProcess(t)
	hostNetPin := pinAgain(t, "/proc/self/ns/net")
	private := newNetNamespace(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	type tc struct {
		typ  specs.LinuxNamespaceType
		path string
		want bool
	}
	var cases []tc
	for typ, name := range hostComparable {
		cases = append(cases,
			tc{typ, "/proc/self/ns/" + name, true},
			tc{typ, fmt.Sprintf("/proc/%d/ns/%s", pid, name), true},
			tc{typ, "", false},
		)
	}
	cases = append(cases,
		tc{specs.NetworkNamespace, hostNetPin, true},
		tc{specs.NetworkNamespace, private.NetPath, false},
		tc{specs.NetworkNamespace, "/proc/self/ns/ipc", false},
		tc{specs.IPCNamespace, "/proc/self/ns/net", false},
		tc{specs.MountNamespace, "/proc/self/ns/mnt", false}, // not a type a pod compares
		tc{specs.NetworkNamespace, "/nonexistent/net", false},
		tc{specs.NetworkNamespace, regular, false},
		tc{specs.NetworkNamespace, fifo, false},
	)
	for _, c := range cases {
		if got := IsHostNamespace(nsEntry(c.typ, c.path)); got != c.want {
			t.Errorf("IsHostNamespace(%s %q) = %v, want %v", c.typ, c.path, got, c.want)
		}
	}
}

// A first container that names the host's namespaces by path decides a pod that uses the host's.
func TestDecideHostPaths(t *testing.T) {
	needRoot(t)
	pid := hostProcess(t)
	hostNS := func(name string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, name) }
	for _, c := range []struct {
		name string
		spec *specs.Spec
		want Request
	}{
		{"host network by path", mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, hostNS("net"))), Request{}},
		{"host user by path, new net", mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, hostNS("user")), nsEntry(specs.NetworkNamespace, "")),
			Request{NewNet: true}},
		{"new user, host network by path", mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, hostNS("net"))),
			Request{NewUser: true, UIDMappings: maps100, GIDMappings: maps100}},
	} {
		got, err := Decide(c.spec)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Decide = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

// What CRI gives the containers of hostNetwork, hostIPC and hostPID pods: /proc/<pause>/ns/* paths that are the
// host's. They are the host's namespaces: accepted in a host pod and dropped from the spec, refused in a pod with
// a namespace of its own, where they stand for the host's.
func TestRewriteHostPaths(t *testing.T) {
	needRoot(t)
	pid := hostProcess(t)
	hostNS := func(name string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, name) }
	private := newNetNamespace(t)

	spec := mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, hostNS("net")), nsEntry(specs.IPCNamespace, hostNS("ipc")),
		nsEntry(specs.UTSNamespace, hostNS("uts")), nsEntry(specs.PIDNamespace, hostNS("pid")), nsEntry(specs.MountNamespace, ""))
	if err := Rewrite("pa", hostPod, spec); err != nil {
		t.Fatalf("host paths in a host pod: %v", err)
	}
	if want := []specs.LinuxNamespace{nsEntry(specs.MountNamespace, "")}; !reflect.DeepEqual(spec.Linux.Namespaces, want) {
		t.Errorf("namespaces = %+v, want %+v", spec.Linux.Namespaces, want)
	}

	spec = mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "/proc/self/ns/user"), nsEntry(specs.MountNamespace, ""))
	if err := Rewrite("pa", hostPod, spec); err != nil {
		t.Fatalf("host user namespace by path in a host pod: %v", err)
	}
	if want := (&specs.Linux{Namespaces: []specs.LinuxNamespace{nsEntry(specs.MountNamespace, "")}}); !reflect.DeepEqual(spec.Linux, want) {
		t.Errorf("linux = %+v, want %+v (no user entry, no mappings)", spec.Linux, want)
	}

	for _, c := range []struct {
		name string
		pod  *Namespaces
		spec *specs.Spec
		want string
	}{
		{"host network by path in a private network pod", private, mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, hostNS("net"))),
			fmt.Sprintf(`container asks for the host network but pod "pa" has a private network namespace (%s)`, private.NetPath)},
		{"host user by path in a user pod", userNetPod, mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, hostNS("user")), nsEntry(specs.NetworkNamespace, "")),
			`container asks for the host user namespace but pod "pa" has user namespace /pod/user`},
	} {
		before := cloneSpec(c.spec)
		err := Rewrite("pa", c.pod, c.spec)
		if !errors.Is(err, ErrConflict) || err.Error() != c.want {
			t.Errorf("%s: Rewrite = %v, want an ErrConflict %q", c.name, err, c.want)
		}
		if !reflect.DeepEqual(before, c.spec) {
			t.Errorf("%s: a refused spec was changed", c.name)
		}
	}
}

// A container that names its pod's namespace by another path (a second pin of it) joins it: the pod's path wins.
func TestRewriteSameNamespaceOtherPath(t *testing.T) {
	needRoot(t)
	pod := newNetNamespace(t)
	spec := mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, pinAgain(t, pod.NetPath)))
	if err := Rewrite("pa", pod, spec); err != nil {
		t.Fatal(err)
	}
	if got := spec.Linux.Namespaces[0].Path; got != pod.NetPath {
		t.Errorf("net path = %q, want the pod's %q", got, pod.NetPath)
	}
	other := newNetNamespace(t)
	spec = mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, other.NetPath))
	if err := Rewrite("pa", pod, spec); !errors.Is(err, ErrConflict) {
		t.Errorf("another network namespace: %v, want a conflict", err)
	}
}

// Adopting a path that is the host's namespace adopts nothing: the pod uses the host's. Deriving a user namespace
// from the host's network namespace stays refused.
func TestAdoptHostPaths(t *testing.T) {
	needRoot(t)
	pid := hostProcess(t)
	dir := stateDir(t)
	ns, err := Adopt(dir, Request{NetPath: fmt.Sprintf("/proc/%d/ns/net", pid), UserPath: "/proc/self/ns/user", UIDMappings: maps100, GIDMappings: maps100})
	if err != nil {
		t.Fatal(err)
	}
	if ns.HasNet() || ns.HasUser() || len(ns.held) != 0 || len(ns.Pins) != 0 || ns.UIDMappings != nil {
		t.Errorf("adopting the host's namespaces: %+v, want none", ns)
	}
	ns.Release()
	_, err = Adopt(dir, Request{NetPath: fmt.Sprintf("/proc/%d/ns/net", pid), DeriveUser: true, UIDMappings: maps100, GIDMappings: maps100})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "owned by the host's user namespace") {
		t.Errorf("deriving a user namespace from the host network: %v", err)
	}
}

// The CRI hostNetwork pod, at the pod's level: the pause container has no network entry, every other container
// names /proc/<pause>/ns/net. They all join, and no container's spec names a network namespace.
func TestPodHostNetworkByPath(t *testing.T) {
	needRoot(t)
	pause := hostProcess(t)
	p, err := New("pa", stateDir(t), DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Join("pause", mkSpec(nil, nil, nsEntry(specs.IPCNamespace, ""), nsEntry(specs.PIDNamespace, ""))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		spec := mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, fmt.Sprintf("/proc/%d/ns/net", pause)), nsEntry(specs.IPCNamespace, "/run/podtest/pause/ipc"))
		if err := p.Join(id, spec); err != nil {
			t.Fatalf("Join(%s): %v", id, err)
		}
		if want := []specs.LinuxNamespace{nsEntry(specs.IPCNamespace, "/run/podtest/pause/ipc")}; !reflect.DeepEqual(spec.Linux.Namespaces, want) {
			t.Errorf("%s: namespaces %+v, want %+v", id, spec.Linux.Namespaces, want)
		}
	}
	for _, id := range []string{"a", "b", "pause"} {
		if _, err := p.Leave(id); err != nil {
			t.Fatal(err)
		}
	}
}
