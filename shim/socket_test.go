package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSocketPath(t *testing.T) {
	a := SocketPath(DefaultSocketDir, "/run/containerd/containerd.sock", "default", "pod-a")
	b := SocketPath(DefaultSocketDir, "/run/containerd/containerd.sock", "default", "pod-b")
	c := SocketPath(DefaultSocketDir, "/tmp/other/containerd.sock", "default", "pod-a")
	d := SocketPath(DefaultSocketDir, "/run/containerd/containerd.sock", "k8s.io", "pod-a")
	if a == b || a == c || a == d {
		t.Fatalf("socket paths collide: %s %s %s %s", a, b, c, d)
	}
	if a != SocketPath(DefaultSocketDir, "/run/containerd/containerd.sock", "default", "pod-a") {
		t.Fatal("socket path is not stable")
	}
	if !strings.HasPrefix(a, DefaultSocketDir+"/") || len(filepath.Base(a)) != 64 {
		t.Fatalf("socket path %s: want %s/<64 hex>", a, DefaultSocketDir)
	}
	// Unix socket paths must fit in sun_path (108 bytes).
	if len(a) >= 108 {
		t.Fatalf("socket path too long: %d", len(a))
	}
}

// containerd-shim-runc-v2 names a group's socket after
// sha256(join(address, namespace, group)). Were ours the same, a runc.v2
// container grouped by io.containerd.runc.v2.group=g and a pod of ours with
// the same group in the same namespace would share one socket, and `start`
// would hand containerd the other runtime's shim. No key of ours may name a
// socket the reference names for any key, its own runtime's name included.
func TestSocketPathIsNotTheReferenceShims(t *testing.T) {
	const addr, ns = "/run/containerd/containerd.sock", "default"
	keys := []string{"g", "pod-a", "io.containerd.pod.v2", "io.containerd.pod.v2/g", "containerd-shim-pod-v2/g"}
	reference := map[string]string{}
	for _, k := range keys {
		sum := sha256.Sum256([]byte(filepath.Join(addr, ns, k)))
		reference[filepath.Join(DefaultSocketDir, hex.EncodeToString(sum[:]))] = k
	}
	for _, k := range keys {
		if theirs, ok := reference[SocketPath(DefaultSocketDir, addr, ns, k)]; ok {
			t.Errorf("our socket for group %q is containerd-shim-runc-v2's for group %q", k, theirs)
		}
	}
}

func TestListenPermissionsAndStaleSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	path := filepath.Join(dir, "sock")
	// A stale socket: bound, then its listener gone.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if st := probeShim(path); st != shimGone {
		t.Fatalf("stale socket: shim state %d, want gone", st)
	}
	l, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st := probeShim(path); st != shimUp {
		t.Fatalf("listening socket: shim state %d, want up", st)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := dst.Mode().Perm(); perm != 0o700 {
		t.Fatalf("socket dir mode %o, want 700", perm)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, action, err := parseFlags([]string{"-namespace", "ns", "-id", "c1", "-address", "/run/c.sock", "-publish-binary", "/usr/bin/containerd", "-debug", "start"})
	if err != nil {
		t.Fatal(err)
	}
	if action != "start" || cfg.Namespace != "ns" || cfg.ID != "c1" || cfg.GRPCAddress != "/run/c.sock" || !cfg.Debug {
		t.Fatalf("parsed %+v action %q", cfg, action)
	}
	if _, _, err := parseFlags([]string{"-id", "c1"}); err == nil {
		t.Fatal("serving without -namespace accepted")
	}
	if _, _, err := parseFlags([]string{"-namespace", "n", "-id", "c1", "start", "extra"}); err == nil {
		t.Fatal("extra arguments accepted")
	}
}

func TestServeEnv(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"A=1"}, []string{"A=1", "GODEBUG=memprofilerate=0"}},
		{[]string{"GODEBUG=madvdontneed=1", "B=2"}, []string{"B=2", "GODEBUG=madvdontneed=1,memprofilerate=0"}},
		{[]string{"GODEBUG="}, []string{"GODEBUG=memprofilerate=0"}},
	} {
		if got := serveEnv(tc.in); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("serveEnv(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
