package stdio

import (
	"errors"
	"fmt"
	goio "io"
	"os"

	"golang.org/x/sys/unix"
)

// eot is what a terminal reads as end of input (^D) when stdin is closed.
const eot = 0x04

// SetConsole is for terminal processes: console is the pty master the
// runtime sent. SetConsole copies the stdin fifo to it and its output to the
// stdout fifo (or file, or logger). The Process owns console from now on,
// whatever the outcome, and closes it in Close.
func (p *Process) SetConsole(console *os.File) error {
	if console == nil {
		return errors.New("set console: no console")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		console.Close()
		return errors.New("set console: stdio already closed")
	case !p.terminal:
		console.Close()
		return errors.New("set console: the process has no terminal")
	case p.console != nil:
		console.Close()
		return errors.New("set console: console already set")
	}
	c, err := pollable(console)
	console.Close()
	if err != nil {
		return fmt.Errorf("set console: %w", err)
	}
	p.console = c
	if ws := p.winsize; ws != nil {
		p.winsize = nil
		if err := setWinsize(c, ws); err != nil {
			p.copyErrs = append(p.copyErrs, err)
		}
	}
	if p.stdinR != nil { // OpenStdin came first
		p.goCopy(func() { p.copyStdinConsole(c) })
	}
	p.running.add()
	p.goCopy(func() { p.copyConsoleOutput(c) })
	return nil
}

// pollable returns a duplicate of f in non-blocking mode, so that reads and
// writes go through Go's poller and Close interrupts them.
func pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(old uintptr) {
		fd, derr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set %s non-blocking: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// copyConsoleOutput copies the console to the stdout sink until the last
// slave closes (EIO is the master's EOF), then lets the sink close. Without
// a sink the output is read and dropped, or the process would block.
func (p *Process) copyConsoleOutput(c *os.File) {
	defer p.running.done()
	var dst goio.Writer = goio.Discard
	if p.termSink != nil {
		dst = p.termSink.w
	}
	_, err := bufferedCopy(dst, c, true)
	if p.termSink != nil {
		p.termSink.release()
	}
	p.noteErr("console to stdout", err)
}

// copyStdinConsole copies the stdin fifo to the console. A tty is not a pipe,
// so this is a plain read/write copy. The fifo ends only after CloseStdin; a
// terminal has no EOF of its own, so the copy then types one ^D.
func (p *Process) copyStdinConsole(c *os.File) {
	_, err := bufferedCopy(c, p.stdinR, false)
	if err == nil {
		_, err = c.Write([]byte{eot})
	}
	p.noteErr("stdin to console", err)
}

// Resize sets the console's window size (TIOCSWINSZ). A size asked for
// before the runtime sent the console (a client resizes an exec's terminal
// before starting it) is kept and set when it comes.
func (p *Process) Resize(width, height uint32) error {
	if width > 0xffff || height > 0xffff {
		return fmt.Errorf("resize: %dx%d is larger than a terminal can be", width, height)
	}
	ws := &unix.Winsize{Col: uint16(width), Row: uint16(height)}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.terminal:
		return errors.New("resize: the process has no terminal")
	case p.console == nil:
		p.winsize = ws
		return nil
	}
	return setWinsize(p.console, ws)
}

func setWinsize(console *os.File, ws *unix.Winsize) error {
	rc, err := console.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return fmt.Errorf("resize: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize console to %dx%d: %w", ws.Col, ws.Row, ierr)
	}
	return nil
}
