//go:build linux

package pod

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A sandbox founds the pod: its namespaces exist before any container, the
// sandbox is the pod's first member, and the pod lives on when its last
// container leaves.
func TestPodFoundBySandbox(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("sb", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Found("sb", Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps}); err != nil {
		t.Fatal(err)
	}
	if err := p.Found("sb", Request{NewNet: true}); err == nil {
		t.Fatal("a pod was founded twice")
	}
	ns, ok := p.Namespaces()
	if !ok || ns.UserPath == "" || ns.NetPath == "" {
		t.Fatalf("namespaces = %+v", ns)
	}
	p.Share(Shared{IPCPath: "/proc/1/ns/ipc"})
	c := userNetSpec(podMaps)
	c.Linux.Namespaces = append(c.Linux.Namespaces, nsEntry(specs.IPCNamespace, ""))
	if err := p.Join("c", c); err != nil {
		t.Fatal(err)
	}
	if got := c.Linux.Namespaces[len(c.Linux.Namespaces)-1].Path; got != "/proc/1/ns/ipc" {
		t.Errorf("the container's ipc namespace = %q, want the pod's", got)
	}
	if st, err := Load(dir); err != nil || !reflect.DeepEqual(st.Containers, []string{"sb", "c"}) {
		t.Fatalf("state = %+v, %v", st, err)
	}
	if last, err := p.Leave("c"); err != nil || last {
		t.Fatalf("Leave(c) = %v, %v: the sandbox is still a member", last, err)
	}
	if _, err := os.Stat(ns.NetPath); err != nil {
		t.Fatalf("the pod's pins went with its last container: %v", err)
	}
	if last, err := p.Leave("sb"); err != nil || !last {
		t.Fatalf("Leave(sb) = %v, %v", last, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("state dir left after the sandbox left: %v", err)
	}
}

// A failed founding leaves nothing.
func TestPodFoundFails(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	p, err := New("sb", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Found("sb", Request{NetPath: "/nonexistent/netns"}); err == nil {
		t.Fatal("founded on a missing network namespace")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("state dir left: %v", err)
	}
	if err := p.Found("sb", Request{NewNet: true}); err != nil {
		t.Fatalf("founding again after a failure: %v", err)
	}
	if _, err := p.Leave("sb"); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFiles(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	if err := PrepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	mounts, err := WriteFiles(dir, Files{Hostname: "pod-h", Hosts: []byte("127.0.0.1 localhost\n"), ResolvConf: []byte("nameserver 10.0.0.1\n"), ShmSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/etc/hostname": "pod-h\n", "/etc/hosts": "127.0.0.1 localhost\n", "/etc/resolv.conf": "nameserver 10.0.0.1\n"}
	for _, m := range mounts {
		if m.Destination == "/dev/shm" {
			if typ := mountFSType(t, m.Source); typ != "tmpfs" {
				t.Errorf("/dev/shm source %s is %q, want a tmpfs", m.Source, typ)
			}
			st, err := os.Stat(m.Source)
			if err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
				t.Errorf("/dev/shm mode %v, %v: want 1777", st.Mode(), err)
			}
			continue
		}
		data, err := os.ReadFile(m.Source)
		if err != nil || string(data) != want[m.Destination] {
			t.Errorf("%s from %s = %q, %v; want %q", m.Destination, m.Source, data, err, want[m.Destination])
		}
		delete(want, m.Destination)
	}
	if len(want) != 0 || len(mounts) != 4 {
		t.Errorf("mounts = %+v; missing %v", mounts, want)
	}
	if err := RemoveFiles(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, filesDir)); !os.IsNotExist(err) {
		t.Fatalf("files left: %v", err)
	}
	if n := mountsBelow(t, filepath.Join(dir, filesDir)); n != 0 {
		t.Fatalf("%d mounts left", n)
	}
	// hostIPC: no /dev/shm of the pod's own.
	mounts, err = WriteFiles(dir, Files{Hostname: "h"})
	if err != nil || len(mounts) != 3 {
		t.Fatalf("WriteFiles without shm = %+v, %v", mounts, err)
	}
	if err := CleanupStateDir(dir); err != nil {
		t.Fatal(err)
	}
}
