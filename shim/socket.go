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

// alive tells whether a shim accepts connections on the socket.
func alive(path string) bool {
	conn, err := net.DialTimeout("unix", path, 100*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
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

// lockSocket serialises the starts and the shutdowns of shims on the socket
// directory: a start decides whether a pod's shim is alive, a shutdown takes
// its socket away, never both at once. The lock is on the directory itself,
// so no lock file is left behind; starts are short, one at a time is fine.
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
