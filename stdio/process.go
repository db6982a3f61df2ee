package stdio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// Config is the stdio containerd asked for (CreateTaskRequest /
// ExecProcessRequest fields).
type Config struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// Options for the shim side.
type Options struct {
	// UID, GID own the container-side pipe ends (fchown), for
	// user-namespaced containers; -1 leaves either unchanged.
	UID, GID int
	// ContainerID, Namespace are a binary:// logger's CONTAINER_ID and
	// CONTAINER_NAMESPACE.
	ContainerID, Namespace string
}

// Starter starts a child (binary logger) and returns once it is started; the
// shim's single reaper waits it. Never call cmd.Wait or os.Process.Wait on a
// child started through it.
type Starter func(cmd *exec.Cmd) error

// Process is one process's stdio as the shim holds it.
type Process struct {
	terminal bool

	// Set by New and never reassigned.
	stdinPath  string    // the stdin fifo, opened by OpenStdin
	stdinPipeW *os.File  // pipes: the shim's end of the container's stdin
	outs       []*output // pipes: the copies Start begins
	termSink   *sink     // terminal: where the console's output goes; nil discards it
	sinks      []*sink   // every sink, for Close
	logger     *logger

	running *tracker       // output copies and a live logger: what Wait waits for
	copies  sync.WaitGroup // every copy goroutine: Close waits for them

	mu sync.Mutex
	// mu guards the lifecycle below: the container's ends until
	// CloseRuntimeEnds, the stdin fifo's handles from OpenStdin (the kept
	// writer until CloseStdin), the console once SetConsole sets it, a window size asked
	// for before it, whether copies started, whether Close ran, and the copy
	// errors. Copies are only started under mu and only while !closed, so
	// Close can wait for every one of them.
	runtime   [3]*os.File // container ends: stdin read, stdout write, stderr write
	stdinR    *os.File    // the stdin fifo, read by the stdin copy, from OpenStdin
	stdinKeep *os.File    // a write handle on the stdin fifo: client disconnect is no EOF
	stdinDone bool        // CloseStdin ran: OpenStdin keeps no handle after it
	console   *os.File
	winsize   *unix.Winsize // asked for before the console came
	started   bool
	closed    bool
	copyErrs  []error
}

// output is one stream from the container's pipe to its sink.
type output struct {
	name string
	src  *os.File // the shim's read end of the container's pipe
	dst  *sink
}

// New opens the stdio cfg names and prepares the container's ends. Nothing
// is copied before Start (pipes) or SetConsole (terminal); a binary:// logger
// is started and ready when New returns.
func New(ctx context.Context, cfg Config, opts Options, start Starter) (_ *Process, retErr error) {
	in, err := parseURI(cfg.Stdin)
	if err != nil {
		return nil, err
	}
	out, err := parseURI(cfg.Stdout)
	if err != nil {
		return nil, err
	}
	errT, err := parseURI(cfg.Stderr)
	if err != nil {
		return nil, err
	}
	if in.kind != kindNull && in.kind != kindFifo {
		return nil, fmt.Errorf("stdin %q: stdin can only be a fifo", cfg.Stdin)
	}
	if cfg.Terminal {
		// The pty carries stderr with stdout.
		errT = target{kind: kindNull}
	}
	if out.kind == kindBinary && errT.kind == kindBinary && out.uri != errT.uri {
		return nil, fmt.Errorf("stdout %q and stderr %q name two loggers; one logger reads both streams", cfg.Stdout, cfg.Stderr)
	}

	p := &Process{terminal: cfg.Terminal, running: newTracker()}
	defer func() {
		if retErr != nil {
			p.CloseRuntimeEnds()
			p.Close()
		}
	}()

	if in.kind == kindFifo {
		p.stdinPath = in.path // opened by OpenStdin
		if !cfg.Terminal {
			if p.runtime[0], p.stdinPipeW, err = newPipe(false, true); err != nil {
				return nil, fmt.Errorf("stdin pipe: %w", err)
			}
		}
	}

	// The read ends a logger gets as fd 3 and fd 4; it holds its own
	// copies once started.
	var logR [2]*os.File
	defer func() { closeAll(logR[:]...) }()
	byPlace := make(map[string]*sink)
	for i, t := range []target{out, errT} {
		name := [2]string{"stdout", "stderr"}[i]
		switch t.kind {
		case kindNull:
		case kindBinary:
			// Pipes: the container writes, the logger reads, both
			// blocking. Terminal: the console copy writes, on the poller.
			r, w, err := newPipe(false, cfg.Terminal)
			if err != nil {
				return nil, fmt.Errorf("%s pipe: %w", name, err)
			}
			logR[i] = r
			if cfg.Terminal {
				s := &sink{name: name + " logger pipe", w: w}
				s.addUser()
				p.sinks = append(p.sinks, s)
				p.termSink = s
			} else {
				p.runtime[1+i] = w
			}
		case kindFifo, kindFile:
			place := t.kind.String() + ":" + t.path
			s := byPlace[place]
			if s == nil {
				if s, err = openSink(t); err != nil {
					return nil, err
				}
				byPlace[place] = s
				p.sinks = append(p.sinks, s)
			}
			s.addUser()
			if cfg.Terminal {
				p.termSink = s
				continue
			}
			r, w, err := newPipe(true, false)
			if err != nil {
				return nil, fmt.Errorf("%s pipe: %w", name, err)
			}
			growPipe(r, outputPipeSize)
			p.runtime[1+i] = w
			p.outs = append(p.outs, &output{name: name, src: r, dst: s})
		}
	}
	for _, f := range p.runtime {
		if f != nil {
			if err := fchown(f, opts.UID, opts.GID); err != nil {
				return nil, err
			}
		}
	}
	if logR[0] != nil || logR[1] != nil {
		t := out
		if t.kind != kindBinary {
			t = errT
		}
		p.running.add()
		if p.logger, err = startLogger(ctx, t, logR[0], logR[1], opts, start, p.running.done); err != nil {
			return nil, err
		}
	}
	if err := fault.Check("stdio.setup"); err != nil {
		return nil, err
	}
	return p, nil
}

// RuntimeStdio returns the files to give the OCI runtime as the process's
// stdin, stdout and stderr: the container-side ends of the pipes. A nil one
// is /dev/null for the process (os/exec maps a nil stream to it). All are nil
// for a terminal, and after CloseRuntimeEnds.
func (p *Process) RuntimeStdio() (stdin, stdout, stderr *os.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runtime[0], p.runtime[1], p.runtime[2]
}

// CloseRuntimeEnds closes the shim's copies of the container's ends once the
// runtime has started the process; until then the output copies cannot see
// EOF. Idempotent.
func (p *Process) CloseRuntimeEnds() {
	p.mu.Lock()
	defer p.mu.Unlock()
	closeAll(p.runtime[:]...)
	p.runtime = [3]*os.File{}
}

// Start begins the copy loops of a process without a terminal; it is a no-op
// for a terminal (see SetConsole), for null stdio and when called again.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("start stdio copies: stdio already closed")
	}
	if p.terminal || p.started {
		return nil
	}
	p.started = true
	if p.stdinPipeW != nil && p.stdinR != nil {
		p.goCopy(p.copyStdin)
	}
	for _, o := range p.outs {
		p.running.add()
		p.goCopy(func() { p.copyOutput(o) })
	}
	return nil
}

// goCopy runs a copy goroutine that Close waits for; mu must be held.
func (p *Process) goCopy(f func()) {
	p.copies.Add(1)
	go func() {
		defer p.copies.Done()
		f()
	}()
}

// copyOutput moves one stream from the container to its sink until the
// container's side closes, then lets the sink close (the client's EOF).
func (p *Process) copyOutput(o *output) {
	defer p.running.done()
	_, err := copyStream(o.dst.w, o.src)
	o.src.Close()
	o.dst.release()
	p.noteErr(o.name, err)
}

// copyStdin moves the stdin fifo into the container's stdin pipe until the
// fifo has no writer left (CloseStdin closed the shim's, the client closed
// its own) and is empty, then closes the pipe: the container's EOF.
func (p *Process) copyStdin() {
	_, err := copyStream(p.stdinPipeW, p.stdinR)
	p.stdinPipeW.Close()
	if errors.Is(err, syscall.EPIPE) {
		err = nil // the container closed its stdin: nobody to give the rest to
	}
	p.noteErr("stdin", err)
}

// noteErr keeps a copy's failure for Close; failures caused by Close closing
// the files under a copy are not failures.
func (p *Process) noteErr(stream string, err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.copyErrs = append(p.copyErrs, fmt.Errorf("copy %s: %w", stream, err))
	}
}

// OpenStdin opens the stdin fifo: the write handle the shim keeps, so that
// a client that goes away (or has not come yet) is no EOF, and the read
// handle the copy reads. The reference shim opens them after the runtime
// created an init, and when an exec starts, never earlier: a client's
// writes wait until then (containerd's fifos block a writer until a reader
// comes), and so does the end of its stdin, which is when clients (nerdctl,
// ctr) send their CloseIO and must find the task. If CloseIO came before,
// no handle is kept: stdin ends with the client's. Call it before Start or
// SetConsole; idempotent, a no-op without stdin.
func (p *Process) OpenStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinPath == "" || p.stdinR != nil || p.closed {
		return nil
	}
	r, err := openStdinFifo(p.stdinPath)
	if err != nil {
		return err
	}
	if !p.stdinDone {
		if p.stdinKeep, err = openStdinKeep(p.stdinPath); err != nil {
			r.Close()
			return err
		}
	}
	p.stdinR = r
	return nil
}

// CloseStdin is CloseIO: it closes the write handle the shim keeps on the
// stdin fifo. The copy then delivers whatever the fifo still holds and,
// once the client's writers are gone too, gives the container EOF (a
// terminal gets one ^D). Nothing written before CloseIO is lost. Idempotent;
// a no-op without stdin.
func (p *Process) CloseStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stdinDone = true
	if p.stdinKeep == nil {
		return nil
	}
	err := p.stdinKeep.Close()
	p.stdinKeep = nil
	if err != nil {
		return fmt.Errorf("close stdin: %w", err)
	}
	return nil
}

// Wait waits until every output copy reached EOF (the container side closed)
// and a binary logger exited, or timeout passes; it returns false on
// timeout. A background child holding the container's pipe keeps output
// open after the process exits: Wait never waits longer than timeout.
func (p *Process) Wait(timeout time.Duration) bool {
	return p.running.wait(timeout)
}

// Close stops everything and closes every handle the shim holds, the kept
// read handles on output fifos included, and waits for the copies to end. A
// logger still running gets SIGTERM (SIGKILL later). It returns the copies'
// failures, if any. Idempotent.
func (p *Process) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	closeAll(p.runtime[:]...)
	p.runtime = [3]*os.File{}
	closeAll(p.stdinKeep, p.console)
	p.stdinKeep = nil
	p.mu.Unlock()

	// A copy waits on one file at a time and holds no other while it
	// waits, so the order of these closes does not matter. stdinR is set
	// under mu, and no longer changes once closed is.
	closeAll(p.stdinR, p.stdinPipeW)
	for _, o := range p.outs {
		o.src.Close()
	}
	for _, s := range p.sinks {
		s.close()
	}
	if p.logger != nil {
		p.logger.stop()
	}
	p.copies.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.copyErrs...)
}
