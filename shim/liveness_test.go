package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	"golang.org/x/sys/unix"
)

// busyShimSocket is the socket of a live pod shim that cannot take one more
// connection at this moment: its listen backlog is full, so a connect fails
// at once (EAGAIN), as a dial with a short timeout fails when the dialling
// process is not scheduled in time on a loaded node. The listener is
// returned; accepting from it frees the backlog.
func busyShimSocket(t *testing.T, path string) net.Listener {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 holds one connection that is not yet accepted.
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), path)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	for i := 0; ; i++ {
		conn, err := net.Dial("unix", path)
		if err != nil {
			break // the backlog is full
		}
		t.Cleanup(func() { conn.Close() })
		if i == 10 {
			t.Fatal("the listen backlog does not fill")
		}
	}
	return ln
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("the pod's socket: %v", err)
	}
	return st.Ino
}

// containerd runs `delete` for a container whose shim connection closed,
// also when the pod's shim lives on for the pod's other containers. A busy
// shim is still alive: its socket and its pod stay.
func TestDeleteKeepsABusyShim(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s", "pod")
	busyShimSocket(t, sock)
	before := inode(t, sock)
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "address"), []byte(unixScheme+sock), 0o600); err != nil {
		t.Fatal(err)
	}
	var alive bool
	h := Handlers{Delete: func(ctx context.Context, cfg *Config) (any, error) {
		alive = cfg.ShimAlive
		return &emptypb.Empty{}, nil
	}}
	if err := deleteAction(context.Background(), h, &Config{ID: "c1", Bundle: bundle}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !alive {
		t.Error("delete took the pod's busy shim for dead: the pod's namespaces would be released under it")
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("delete removed the socket of the pod's live shim: %v", err)
	}
	if inode(t, sock) != before {
		t.Error("the pod's socket was replaced")
	}
}

// logRecorder tells when a message is logged.
type logRecorder struct {
	mu      sync.Mutex
	msgs    []string
	changed chan struct{}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

func (r *logRecorder) logged(substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// busyPod is a pod "p" whose live shim is busy (accepts no connection
// yet), and a start of container c2 of that pod, waiting for it.
type busyPod struct {
	cfg  *Config
	sock string
	ln   net.Listener
	life *lifecycle
	srv  *ttrpc.Server
	out  bytes.Buffer
	done chan error
}

// startOnBusyPod starts the start and returns once it has logged that the
// pod's shim may be busy; serve lets the shim answer.
func startOnBusyPod(t *testing.T) *busyPod {
	t.Helper()
	// Short: a socket path must fit in sun_path.
	sockDir, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	p := &busyPod{done: make(chan error, 1)}
	p.cfg = &Config{Namespace: "ns", ID: "c2", Bundle: t.TempDir(), GRPCAddress: "/run/containerd.sock", SocketDir: sockDir}
	spec, _ := json.Marshal(map[string]any{"annotations": map[string]string{"pod": "p"}})
	if err := os.WriteFile(filepath.Join(p.cfg.Bundle, "config.json"), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	h := Handlers{GroupKey: func(a map[string]string, id string) string { return a["pod"] }}
	p.sock = SocketPath(sockDir, p.cfg.GRPCAddress, p.cfg.Namespace, "p")
	p.ln = busyShimSocket(t, p.sock)
	before := inode(t, p.sock)

	// The live shim: its lifecycle answers Reserve once it accepts.
	p.life = newLifecycle("", "c1", nil)
	if p.srv, err = ttrpc.NewServer(); err != nil {
		t.Fatal(err)
	}
	p.life.register(p.srv)
	t.Cleanup(func() { p.srv.Close() })

	rec := &logRecorder{changed: make(chan struct{}, 1)}
	old := slog.Default()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() { slog.SetDefault(old) })

	go func() { p.done <- start(context.Background(), h, p.cfg, nil, &p.out) }()
	for !rec.logged("busy") {
		select {
		case err := <-p.done:
			t.Fatalf("start returned (error %v) without waiting for the pod's busy shim; the pod's socket is replaced: %v",
				err, inode(t, p.sock) != before)
		case <-rec.changed:
		}
	}
	return p
}

// serve lets the pod's shim answer.
func (p *busyPod) serve() { go p.srv.Serve(context.Background(), p.ln) }

// A `start` that finds the pod's shim busy must wait for it, never put a
// second shim on the pod's socket: that one would fail to create the pod's
// namespaces (their pins exist), tear down the pod's state under the first
// shim, and every later start of the pod would spawn yet another shim.
func TestStartWaitsForABusyShimInsteadOfReplacingIt(t *testing.T) {
	p := startOnBusyPod(t)
	before := inode(t, p.sock)
	// The shim gets to its connections: start must now reserve it.
	p.serve()
	if err := <-p.done; err != nil {
		t.Fatalf("start: %v", err)
	}
	if got := p.out.String(); got != unixScheme+p.sock {
		t.Errorf("start answered %q, want the live shim's %q", got, unixScheme+p.sock)
	}
	if inode(t, p.sock) != before {
		t.Error("the pod's socket was replaced")
	}
	p.life.mu.Lock()
	_, reserved := p.life.reserved[p.cfg.ID]
	p.life.mu.Unlock()
	if !reserved {
		t.Error("the live shim was not reserved for the container")
	}
}

// A start waiting for its pod's busy shim (up to reserveWait) does not hold
// the start lock meanwhile: the starts and the exits of the node's other
// pods go on. (It held it: every start on the node waited behind one pod's
// slow shim.)
func TestStartWaitingForABusyShimHoldsNoLock(t *testing.T) {
	p := startOnBusyPod(t)
	// Another pod's start (or a shim's exit) takes the lock now.
	locked := make(chan func(), 1)
	go func() {
		unlock, err := lockSocket(SocketPath(p.cfg.SocketDir, p.cfg.GRPCAddress, p.cfg.Namespace, "other"))
		if err != nil {
			t.Error(err)
		}
		locked <- unlock
	}()
	select {
	case unlock := <-locked:
		if unlock != nil {
			unlock()
		}
	case err := <-p.done:
		t.Fatalf("the start lock was held until the start waiting for its pod's busy shim ended (%v)", err)
	}
	p.serve()
	if err := <-p.done; err != nil {
		t.Fatalf("start: %v", err)
	}
}
