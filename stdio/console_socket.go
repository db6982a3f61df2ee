package stdio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ConsoleSocket is the unix socket given to `runc --console-socket`: the
// runtime connects and sends the pty master with SCM_RIGHTS.
type ConsoleSocket struct {
	path string
	l    *net.UnixListener
	once sync.Once
}

// NewConsoleSocket listens on a new socket, mode 0600, with a random name in
// dir (the caller gives a private 0700 directory).
func NewConsoleSocket(dir string) (*ConsoleSocket, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("console socket name: %w", err)
	}
	path := filepath.Join(dir, "pty-"+hex.EncodeToString(b[:])+".sock")
	if max := len(unix.RawSockaddrUnix{}.Path) - 1; len(path) > max {
		return nil, fmt.Errorf("console socket path %s is %d bytes, more than the %d a unix socket allows", path, len(path), max)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on console socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod console socket %s: %w", path, err)
	}
	return &ConsoleSocket{path: path, l: l}, nil
}

// Path is the socket's path, for --console-socket.
func (c *ConsoleSocket) Path() string { return c.path }

// ReceiveMaster waits for the runtime to connect and send the pty master,
// until ctx is done. The returned file is non-blocking, on Go's poller.
func (c *ConsoleSocket) ReceiveMaster(ctx context.Context) (*os.File, error) {
	if err := c.l.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("console socket %s: %w", c.path, err)
	}
	stop := context.AfterFunc(ctx, func() { c.l.SetDeadline(time.Unix(1, 0)) })
	conn, err := c.l.AcceptUnix()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("accept on console socket %s: %w", c.path, err)
	}
	defer conn.Close()
	stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("read pty master from console socket %s: %w", c.path, err)
	}
	fds, err := rightsIn(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", c.path, err)
	}
	// Anything beyond the one master is not ours to keep.
	for _, fd := range fds[min(1, len(fds)):] {
		unix.Close(fd)
	}
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		if len(fds) > 0 {
			unix.Close(fds[0])
		}
		return nil, fmt.Errorf("console socket %s: control message truncated", c.path)
	case len(fds) == 0:
		return nil, fmt.Errorf("console socket %s: the runtime sent no file descriptor", c.path)
	}
	fd := fds[0]
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("console socket %s: what the runtime sent is not a terminal: %w", c.path, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set pty master non-blocking: %w", err)
	}
	name := string(buf[:n])
	if name == "" {
		name = "pty master"
	}
	return os.NewFile(uintptr(fd), name), nil
}

// rightsIn returns the file descriptors in SCM_RIGHTS control messages.
func rightsIn(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, fmt.Errorf("parse SCM_RIGHTS: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// Close stops listening and removes the socket file. Idempotent.
func (c *ConsoleSocket) Close() error {
	var err error
	c.once.Do(func() {
		err = c.l.Close()
		if rerr := os.Remove(c.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	})
	return err
}
