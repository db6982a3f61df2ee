//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCreatePinnedUserAndNet(t *testing.T) {
	needRoot(t)
	nsenter := needTool(t, "nsenter")
	ip := needTool(t, "ip")
	dir := stateDir(t)

	start := time.Now()
	ns, err := CreatePinned(dir, DirectRunner{}, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CreatePinned(user+net) took %v", time.Since(start))
	noChildren(t)

	if ns.UserPath != filepath.Join(dir, "user") || ns.NetPath != filepath.Join(dir, "net") || !ns.Owned {
		t.Fatalf("namespaces = %+v", ns)
	}
	for _, p := range []string{ns.UserPath, ns.NetPath} {
		if typ := mountFSType(t, p); typ != "nsfs" {
			t.Errorf("%s: mounted file system %q, want nsfs", p, typ)
		}
	}
	userIno, err := Inode(ns.UserPath)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := Owner(ns.NetPath)
	if err != nil {
		t.Fatal(err)
	}
	if owner != userIno {
		t.Errorf("network namespace is owned by user namespace %d, want the pinned %d", owner, userIno)
	}
	hostUser, _ := Inode("/proc/self/ns/user")
	hostNet, _ := Inode("/proc/self/ns/net")
	netIno, _ := Inode(ns.NetPath)
	if userIno == hostUser || netIno == hostNet {
		t.Errorf("pinned namespaces are the host's: user %d (host %d), net %d (host %d)", userIno, hostUser, netIno, hostNet)
	}

	for _, f := range []string{"uid_map", "gid_map"} {
		got := strings.Join(strings.Fields(run(t, nsenter, "--user="+ns.UserPath, "--net="+ns.NetPath, "cat", "/proc/self/"+f)), " ")
		if got != "0 100000 65536" {
			t.Errorf("%s in the pod user namespace = %q, want \"0 100000 65536\"", f, got)
		}
	}
	if got := run(t, nsenter, "--user="+ns.UserPath, "cat", "/proc/self/setgroups"); got != "allow" {
		t.Errorf("setgroups = %q, want allow", got)
	}
	links := run(t, nsenter, "--net="+ns.NetPath, ip, "-o", "link")
	if lines := strings.Split(links, "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") || !strings.Contains(lines[0], ",UP") {
		t.Errorf("links in the pod network namespace:\n%s\nwant lo alone, UP", links)
	}

	if err := ns.Release(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "user"), filepath.Join(dir, "net")} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Release: %v, want gone", p, err)
		}
	}
	if n := mountsBelow(t, dir); n != 1 {
		t.Errorf("%d mounts under %s after Release, want the dir's own bind mount only", n, dir)
	}
	if err := ns.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if err := CleanupStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := mountsBelow(t, dir); n != 0 {
		t.Errorf("%d mounts under %s after CleanupStateDir", n, dir)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir after CleanupStateDir: %v, want gone", err)
	}
	if err := CleanupStateDir(dir); err != nil {
		t.Errorf("second CleanupStateDir: %v", err)
	}
}

func TestCreatePinnedNetOnly(t *testing.T) {
	needRoot(t)
	nsenter := needTool(t, "nsenter")
	ip := needTool(t, "ip")
	dir := stateDir(t)
	ns, err := CreatePinned(dir, DirectRunner{}, Request{NewNet: true})
	if err != nil {
		t.Fatal(err)
	}
	noChildren(t)
	if ns.UserPath != "" || ns.NetPath != filepath.Join(dir, "net") || len(ns.Pins) != 1 || ns.UIDMappings != nil {
		t.Fatalf("namespaces = %+v", ns)
	}
	if typ := mountFSType(t, ns.NetPath); typ != "nsfs" {
		t.Errorf("net pin: %q, want nsfs", typ)
	}
	owner, err := Owner(ns.NetPath)
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := Inode("/proc/self/ns/user"); owner != host {
		t.Errorf("net-only pod: network namespace owned by user namespace %d, want the host's %d", owner, host)
	}
	if links := run(t, nsenter, "--net="+ns.NetPath, ip, "-o", "link"); !strings.Contains(links, "lo:") || !strings.Contains(links, ",UP") {
		t.Errorf("links: %s, want lo UP", links)
	}
	if err := ns.Release(); err != nil {
		t.Fatal(err)
	}
	if n := mountsBelow(t, dir); n != 1 {
		t.Errorf("%d mounts under the state dir after Release, want 1", n)
	}
}

func TestCreatePinnedUserOnly(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	ns, err := CreatePinned(dir, DirectRunner{}, Request{NewUser: true, UIDMappings: podMaps, GIDMappings: podMaps})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Release()
	if ns.NetPath != "" || ns.UserPath == "" || len(ns.Pins) != 1 {
		t.Fatalf("namespaces = %+v", ns)
	}
	if typ := mountFSType(t, ns.UserPath); typ != "nsfs" {
		t.Errorf("user pin: %q, want nsfs", typ)
	}
}

// The thread that brought lo up came back: no thread of the process stays in
// (and keeps alive) the pod's network namespace.
func TestCreatePinnedLeavesNoThreadInPod(t *testing.T) {
	needRoot(t)
	host, err := Inode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		dir := stateDir(t)
		ns, err := CreatePinned(dir, DirectRunner{}, Request{NewNet: true})
		if err != nil {
			t.Fatal(err)
		}
		ns.Release()
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		if ino, err := Inode(p); err == nil && ino != host {
			t.Errorf("%s is network namespace %d, not the host's %d", p, ino, host)
		}
	}
}

func TestCreatePinnedTwiceInOneDir(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	first, err := CreatePinned(dir, DirectRunner{}, Request{NewNet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	ino, _ := Inode(first.NetPath)
	if _, err := CreatePinned(dir, DirectRunner{}, Request{NewNet: true}); err == nil {
		t.Fatal("a second CreatePinned in the same dir worked")
	}
	noChildren(t)
	if got, _ := Inode(first.NetPath); got != ino || mountFSType(t, first.NetPath) != "nsfs" {
		t.Errorf("the failed second CreatePinned disturbed the first pin (inode %d, was %d)", got, ino)
	}
}

func TestCreatePinnedRefusals(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	if _, err := CreatePinned(dir, DirectRunner{}, Request{}); err == nil {
		t.Error("CreatePinned of nothing worked")
	}
	if _, err := CreatePinned(dir, DirectRunner{}, Request{NewUser: true}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("CreatePinned of a user namespace without mappings: %v, want ErrInvalidSpec", err)
	}
	if _, err := CreatePinned("relative", DirectRunner{}, Request{NewNet: true}); err == nil {
		t.Error("CreatePinned in a relative dir worked")
	}
	noChildren(t)
}

func TestPrepareStateDir(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	for range 3 {
		if err := PrepareStateDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("mounts at %s: %+v, want one", dir, ms)
	}
	for _, tag := range strings.Fields(ms[0].Optional) {
		if strings.HasPrefix(tag, "shared:") || strings.HasPrefix(tag, "master:") {
			t.Errorf("state dir mount has propagation %s, want private", tag)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	if err := PrepareStateDir("/"); err == nil {
		t.Error("PrepareStateDir(/) worked")
	}
	if err := CleanupStateDir("/"); err == nil {
		t.Error("CleanupStateDir(/) worked")
	}
}

// A shim that died with its pins mounted: CleanupStateDir finds them by the
// mount table alone.
func TestCleanupStateDirAfterCrash(t *testing.T) {
	needRoot(t)
	dir := stateDir(t)
	if _, err := CreatePinned(dir, DirectRunner{}, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps}); err != nil {
		t.Fatal(err)
	}
	if n := mountsBelow(t, dir); n != 3 {
		t.Fatalf("%d mounts under the state dir, want 3 (dir, user, net)", n)
	}
	for range 2 {
		if err := CleanupStateDir(dir); err != nil {
			t.Fatal(err)
		}
		if n := mountsBelow(t, dir); n != 0 {
			t.Errorf("%d mounts under the state dir after cleanup", n)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("state dir after cleanup: %v", err)
		}
	}
}

// ipNetns adds a network namespace with `ip netns add` (owned by the host's
// user namespace) and returns its path.
func ipNetns(t *testing.T) string {
	t.Helper()
	ip := needTool(t, "ip")
	name := fmt.Sprintf("podtest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	run(t, ip, "netns", "add", name)
	t.Cleanup(func() { exec.Command(ip, "netns", "delete", name).Run() })
	return "/run/netns/" + name
}

func TestAdoptIPNetns(t *testing.T) {
	needRoot(t)
	netPath := ipNetns(t)
	spec := mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, netPath), nsEntry(specs.PIDNamespace, ""))
	req, err := Decide(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := stateDir(t)
	ns, err := Setup(dir, DirectRunner{}, req)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Owned || ns.NetPath != netPath || ns.UserPath != "" || len(ns.Pins) != 0 || len(ns.held) != 1 {
		t.Fatalf("namespaces = %+v", ns)
	}
	if err := Rewrite("pa", ns, spec); err != nil {
		t.Fatal(err)
	}
	if err := ns.Release(); err != nil {
		t.Fatal(err)
	}
	if typ := mountFSType(t, netPath); typ != "nsfs" {
		t.Errorf("Release touched the adopted %s: now %q", netPath, typ)
	}
}

func TestAdoptDeriveUser(t *testing.T) {
	needRoot(t)
	podDir := stateDir(t)
	pod, err := CreatePinned(podDir, DirectRunner{}, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps})
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Release()

	// A spec that asks for a user namespace and names the network namespace
	// only, as containerd 2.x's sandbox API gives netns_path alone.
	spec := mkSpec(podMaps, podMaps, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, pod.NetPath))
	req, err := Decide(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := stateDir(t)
	ns, err := Setup(dir, DirectRunner{}, req)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Owned || ns.UserPath != filepath.Join(dir, "user") || ns.NetPath != pod.NetPath || len(ns.Pins) != 1 {
		t.Fatalf("namespaces = %+v", ns)
	}
	want, _ := Inode(pod.UserPath)
	if got, _ := Inode(ns.UserPath); got != want {
		t.Errorf("derived user namespace %d, want %d (the owner of %s)", got, want, pod.NetPath)
	}
	if typ := mountFSType(t, ns.UserPath); typ != "nsfs" {
		t.Errorf("derived pin: %q, want nsfs", typ)
	}
	if !reflect.DeepEqual(ns.UIDMappings, podMaps) {
		t.Errorf("mappings = %v", ns.UIDMappings)
	}
	if err := ns.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "user")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("derived pin after Release: %v", err)
	}
	if mountFSType(t, pod.UserPath) != "nsfs" || mountFSType(t, pod.NetPath) != "nsfs" {
		t.Error("releasing the adopting pod unpinned the adopted namespaces")
	}

	// The same through a user path and a net path: they agree.
	req = Request{UserPath: pod.UserPath, NetPath: pod.NetPath, UIDMappings: podMaps, GIDMappings: podMaps}
	ns, err = Adopt(dir, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Pins) != 0 || len(ns.held) != 2 {
		t.Errorf("adopting both paths: %+v", ns)
	}
	ns.Release()
}

func TestAdoptRefusals(t *testing.T) {
	needRoot(t)
	hostOwned := ipNetns(t)
	podDir := stateDir(t)
	pod, err := CreatePinned(podDir, DirectRunner{}, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps})
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Release()
	dir := stateDir(t)
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"derive from a host-owned netns", Request{NetPath: hostOwned, DeriveUser: true, UIDMappings: podMaps, GIDMappings: podMaps},
			"names network namespace " + hostOwned + ", which is owned by the host's user namespace"},
		{"net not owned by the user", Request{UserPath: pod.UserPath, NetPath: hostOwned, UIDMappings: podMaps, GIDMappings: podMaps},
			"network namespace " + hostOwned + " is not owned by user namespace " + pod.UserPath},
		{"user path is a netns", Request{UserPath: pod.NetPath, UIDMappings: podMaps, GIDMappings: podMaps},
			pod.NetPath + " is a network namespace, not a user namespace"},
		{"net path is a userns", Request{NetPath: "/proc/self/ns/user"},
			"/proc/self/ns/user is a user namespace, not a network namespace"},
		{"not a namespace", Request{NetPath: "/etc/hostname"}, "/etc/hostname is not a namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := Adopt(dir, tc.req)
			if err == nil {
				ns.Release()
				t.Fatal("Adopt worked")
			}
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Adopt: %v\nwant an ErrInvalidSpec containing %q", err, tc.want)
			}
		})
	}
	if _, err := Adopt(dir, Request{NetPath: "/nonexistent/net"}); err == nil {
		t.Error("Adopt of a missing path worked")
	}
	if n := mountsBelow(t, dir); n > 1 {
		t.Errorf("refused adoptions left %d mounts in %s", n, dir)
	}
}

func BenchmarkCreatePinned(b *testing.B) {
	benchCreatePinned(b, Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps})
}

// A network namespace alone is made by a thread of the shim, with no child.
func BenchmarkCreatePinnedNetOnly(b *testing.B) {
	benchCreatePinned(b, Request{NewNet: true})
}

func benchCreatePinned(b *testing.B, req Request) {
	needRoot(b)
	root := b.TempDir()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(root, strconv.Itoa(i))
		ns, err := CreatePinned(dir, DirectRunner{}, req)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ns.Release()
		CleanupStateDir(dir)
		b.StartTimer()
	}
}
