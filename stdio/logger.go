package stdio

import (
	"context"
	"errors"
	"fmt"
	goio "io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// loggerReadyTimeout bounds how long a logger may take to say it is ready.
	loggerReadyTimeout = 10 * time.Second
	// loggerExitGrace: a logger that closes fd 5 by exiting has not said it
	// is ready; its exit follows the close within this time.
	loggerExitGrace = 25 * time.Millisecond
	// loggerTermGrace is how long a logger has to exit after SIGTERM before
	// it gets SIGKILL.
	loggerTermGrace = 10 * time.Second
)

// logger is a binary:// logger child. The shim's reaper waits for it; this
// side only watches a pidfd to learn that it exited.
type logger struct {
	path string
	proc *os.Process
	// exited is closed once the logger has exited; nil when the kernel gave
	// no pidfd, and then the logger's end is never known here.
	exited chan struct{}
}

// startLogger starts the logger named by t with fd 3 = stdout (read end),
// fd 4 = stderr (read end), fd 5 = the write end of a ready pipe, and waits
// until it closes or writes fd 5. A nil stream is /dev/null. onExit is
// called exactly once, whatever happens: when the logger has exited, or at
// once if it never started or its exit cannot be watched.
func startLogger(ctx context.Context, t target, stdout, stderr *os.File, opts Options, start Starter, onExit func()) (*logger, error) {
	watching := false
	defer func() {
		if !watching {
			onExit()
		}
	}()
	var devnull *os.File
	if stdout == nil || stderr == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, fmt.Errorf("open %s for logger: %w", os.DevNull, err)
		}
		defer f.Close()
		devnull = f
	}
	if stdout == nil {
		stdout = devnull
	}
	if stderr == nil {
		stderr = devnull
	}
	readyR, readyW, err := newPipe(true, false)
	if err != nil {
		return nil, fmt.Errorf("logger ready pipe: %w", err)
	}
	defer readyR.Close()

	cmd := exec.Command(t.path, t.args...)
	cmd.ExtraFiles = []*os.File{stdout, stderr, readyW}
	cmd.Env = append(os.Environ(), "CONTAINER_ID="+opts.ContainerID, "CONTAINER_NAMESPACE="+opts.Namespace)
	pidfd := -1
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &pidfd}
	err = start(cmd)
	readyW.Close() // the logger holds the only write end now
	if err != nil {
		return nil, fmt.Errorf("start binary logger %s: %w", t.path, err)
	}
	l := &logger{path: t.path, proc: cmd.Process}
	if pidfd >= 0 {
		l.exited = make(chan struct{})
		watching = true
		go l.watch(pidfd, onExit)
	}
	if err := l.waitReady(ctx, readyR); err != nil {
		l.proc.Kill()
		return nil, err
	}
	return l, nil
}

// waitReady waits, bounded by loggerReadyTimeout and ctx, for the logger to
// write to or close its ready pipe.
func (l *logger) waitReady(ctx context.Context, ready *os.File) error {
	if err := ready.SetReadDeadline(time.Now().Add(loggerReadyTimeout)); err != nil {
		return fmt.Errorf("logger ready pipe: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { ready.SetReadDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	n, err := ready.Read(b[:])
	switch {
	case n > 0:
		return nil
	case err == goio.EOF:
		if l.exitedWithin(loggerExitGrace) {
			return fmt.Errorf("binary logger %s exited before it signalled ready on fd 5", l.path)
		}
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("wait for binary logger %s to be ready: %w", l.path, ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("binary logger %s did not signal ready on fd 5 within %v", l.path, loggerReadyTimeout)
	default:
		return fmt.Errorf("wait for binary logger %s to be ready: %w", l.path, err)
	}
}

// exitedWithin reports whether the logger exits within d. Without a pidfd it
// cannot tell and says no.
func (l *logger) exitedWithin(d time.Duration) bool {
	if l.exited == nil {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-l.exited:
		return true
	case <-timer.C:
		return false
	}
}

// watch waits on the pidfd through Go's poller (a pidfd reads as ready once
// its process has exited, reaped or not), then closes l.exited. It never
// waits for the process: the reaper does.
func (l *logger) watch(pidfd int, onExit func()) {
	defer func() {
		close(l.exited)
		onExit()
	}()
	exited := func(fd uintptr) bool {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			return err != nil || n > 0
		}
	}
	if err := unix.SetNonblock(pidfd, true); err != nil {
		// Cannot get on the poller: wait in poll(2), on a thread of its own.
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				return
			}
		}
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	if err := rc.Read(exited); err != nil {
		// Not pollable after all: block in poll(2) instead.
		rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					return
				}
			}
		})
	}
}

// stop asks a logger that is still running to finish: SIGTERM, so it can
// flush, and SIGKILL if it is still there loggerTermGrace later. Without a
// pidfd it does nothing: the logger may be long reaped and its pid reused.
func (l *logger) stop() {
	if l.exited == nil {
		return
	}
	select {
	case <-l.exited:
		return
	default:
	}
	// os.Process signals through its own pidfd: a reaped logger's pid can
	// never be mistaken for another process.
	l.proc.Signal(syscall.SIGTERM)
	time.AfterFunc(loggerTermGrace, func() {
		select {
		case <-l.exited:
		default:
			l.proc.Kill()
		}
	})
}
