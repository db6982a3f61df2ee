package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const unixScheme = "unix://"

// SocketPath is the pod's socket: one per (runtime, containerd, namespace,
// pod), so every container of a pod finds the same shim, and only ours.
// containerd-shim-runc-v2 names a group's socket after
// sha256(join(address, namespace, group)) in the same directory, and accepts
// the same group annotation: without our runtime's name in what is hashed, a
// runc.v2 group and one of our pods with the same key would share a socket,
// and `start` would hand containerd the other runtime's shim. The name and a
// NUL come first: what the reference hashes starts with containerd's socket
// path, which holds no NUL, so no group of its can make the same string.
func SocketPath(dir, containerdAddress, namespace, groupKey string) string {
	sum := sha256.Sum256([]byte(RuntimeName + "\x00" + filepath.Join(containerdAddress, namespace, groupKey)))
	return filepath.Join(dir, hex.EncodeToString(sum[:]))
}

// socketFromAddress strips the unix:// scheme.
func socketFromAddress(addr string) string {
	return strings.TrimPrefix(addr, unixScheme)
}

// shimState is what dialling a pod's socket says of the pod's shim.
type shimState int

const (
	shimGone   shimState = iota // no socket file, or nothing listens on it
	shimUp                      // a shim took the connection
	shimUnsure                  // the dial failed otherwise: a shim may be there
)

// dialTimeout bounds a dial of a shim's socket. A unix connect never waits
// for the peer: only a dialling process that is not scheduled in time (a
// loaded node) gets near it.
const dialTimeout = 5 * time.Second

// dialShim connects to a pod's socket. Only a missing socket file or a
// refused connection mean that no shim serves the pod. Any other failure (a
// full backlog, a timeout) says nothing of the shim: taking it for gone would
// put a second shim on the pod's socket, which then tears the pod down under
// the first.
func dialShim(path string) (net.Conn, shimState, error) {
	conn, err := net.DialTimeout("unix", path, dialTimeout)
	switch {
	case err == nil:
		return conn, shimUp, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ECONNREFUSED):
		return nil, shimGone, err
	default:
		return nil, shimUnsure, err
	}
}

// probeShim tells whether a shim may serve the socket, asking it nothing.
func probeShim(path string) shimState {
	conn, st, _ := dialShim(path)
	if conn != nil {
		conn.Close()
	}
	return st
}

// listen creates the socket, 0600 in a 0700 directory. A stale socket left
// by a dead shim is replaced.
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod socket dir %s: %w", dir, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	// Create the socket with no permission for anyone but its owner from the
	// start, rather than chmod after bind.
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	return l, nil
}

// lockSocket serialises the spawns and the exits of shims on the socket
// directory: a start decides that no shim serves a pod and spawns one, an
// exiting shim takes its socket away, never both at once. It is held for a
// spawn's few milliseconds, never while a shim is asked something (see
// claim). The lock is on the directory itself, so no lock file is left
// behind.
func lockSocket(path string) (func(), error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open socket dir for the start lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take start lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// removeSocket removes the socket file; one already gone is fine.
func removeSocket(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("remove the shim's socket", "socket", path, "error", err)
	}
}
