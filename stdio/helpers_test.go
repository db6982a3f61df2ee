package stdio

import (
	"bytes"
	goio "io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// noOwner leaves the container ends' owner alone.
var noOwner = Options{UID: -1, GID: -1, ContainerID: "c1", Namespace: "ns1"}

// testStarter starts a child and waits for it in the background, as the
// shim's reaper would.
func testStarter(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// mkfifo makes a fifo in the test's temporary directory.
func mkfifo(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	return path
}

// openClient opens a fifo as containerd's client would, blocking until the
// other side is there.
func openClient(t testing.TB, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// dupFile duplicates f, as the runtime does when it hands a file to its
// child: the duplicate stays open after CloseRuntimeEnds.
func dupFile(t testing.TB, f *os.File) *os.File {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	var derr error
	rc.Control(func(old uintptr) { fd, derr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) })
	if derr != nil {
		t.Fatalf("dup: %v", derr)
	}
	d := os.NewFile(uintptr(fd), f.Name())
	t.Cleanup(func() { d.Close() })
	return d
}

// readResult is what a background read returned.
type readResult struct {
	data []byte
	err  error
}

// readAllAsync reads r to EOF in the background.
func readAllAsync(r goio.Reader) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		b, err := goio.ReadAll(r)
		ch <- readResult{b, err}
	}()
	return ch
}

// await returns the read's result or fails the test after d.
func await(t testing.TB, ch <-chan readResult, d time.Duration, what string) []byte {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.data
	case <-time.After(d):
		t.Fatalf("%s: nothing after %v", what, d)
	}
	return nil
}

// randomBytes returns n bytes of reproducible noise.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

// writeAsync writes data to w, closes it and reports the error.
func writeAsync(w *os.File, data []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		ch <- err
	}()
	return ch
}

// sameBytes fails with a short description when got != want.
func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		n := min(len(got), 64)
		t.Fatalf("%s: got %d bytes (%q...), want %d bytes", what, len(got), got[:n], len(want))
	}
}

// newOrFatal is New that fails the test, and closes the process after it.
func newOrFatal(t testing.TB, cfg Config, opts Options) *Process {
	t.Helper()
	p, err := New(t.Context(), cfg, opts, testStarter)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func init() {
	// Tests must not wait ten seconds for a logger that will never be ready.
	loggerReadyTimeout = 2 * time.Second
}
