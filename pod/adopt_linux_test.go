//go:build linux

package pod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A namespace path comes from a spec, and anything may be there. It is
// checked without blocking: a fifo (whose plain open waits for a writer,
// forever, under the pod's lock), a regular file, a directory or a missing
// path is refused as an invalid spec naming the path, a namespace of
// another type too; only an nsfs file of the right type is taken.
func TestOpenNamespaceChecksWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("net\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		typ  int
		want string // "" = taken
	}{
		{"fifo", fifo, unix.CLONE_NEWNET, fifo + " is not a namespace: it is a fifo"},
		{"regular file", file, unix.CLONE_NEWNET, file + " is not a namespace: it is a regular file"},
		{"directory", dir, unix.CLONE_NEWNET, dir + " is not a namespace: it is a directory"},
		{"missing", filepath.Join(dir, "missing"), unix.CLONE_NEWNET, filepath.Join(dir, "missing")},
		{"wrong type", "/proc/self/ns/uts", unix.CLONE_NEWNET, "/proc/self/ns/uts is a uts namespace, not a network namespace"},
		{"right type", "/proc/self/ns/net", unix.CLONE_NEWNET, ""},
		{"right type, user", "/proc/self/ns/user", unix.CLONE_NEWUSER, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				f   *os.File
				err error
			}
			done := make(chan result, 1)
			go func() {
				f, err := openNamespace(tc.path, tc.typ)
				done <- result{f, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				// Free the blocked open (a writer arrives) before failing.
				if w, err := os.OpenFile(tc.path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				<-done
				t.Fatalf("openNamespace(%s) blocked", tc.path)
			}
			if tc.want == "" {
				if r.err != nil {
					t.Fatalf("openNamespace(%s): %v", tc.path, r.err)
				}
				r.f.Close()
				return
			}
			if r.err == nil {
				r.f.Close()
				t.Fatalf("openNamespace(%s) took it", tc.path)
			}
			if !errors.Is(r.err, ErrInvalidSpec) || !strings.Contains(r.err.Error(), tc.want) {
				t.Errorf("openNamespace(%s): %v\nwant an ErrInvalidSpec containing %q", tc.path, r.err, tc.want)
			}
		})
	}
}
