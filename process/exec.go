package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// Exec is an additional process run in a container.
type Exec struct {
	Process
	init *Init
	spec *specs.Process

	// launch is what Prepare readied, until Start or Delete takes it.
	// Guarded by the operation lock.
	launch *execLaunch
}

// execLaunch is an exec made ready ahead of Start: its stdio, and the
// runtime already started and waiting for the spec (nil if that failed:
// Start then starts one itself).
type execLaunch struct {
	streams *stdio.Process
	console *stdio.ConsoleSocket
	pending Pending
	pidFile string
	err     error // setting up stdio failed; Start reports it
}

// release undoes a launch that will not start.
func (l *execLaunch) release() {
	if l.pending != nil {
		l.pending.Abort()
		l.pending = nil
	}
	closeIO(l.streams, l.console)
}

// NewExec returns an exec process of init's container, not yet started.
func NewExec(init *Init, id string, spec *specs.Process, streams stdio.Config) *Exec {
	return &Exec{Process: newProcess(id, streams), init: init, spec: spec}
}

// Prepare readies the exec for Start while the client is still on its way
// there: stdio is set up and the runtime's exec is started, to wait for the
// process spec. Nothing runs in the container until Start. A failure is kept
// for Start to report, as it would have been without Prepare.
func (e *Exec) Prepare(ctx context.Context) {
	e.op.Lock()
	defer e.op.Unlock()
	l := e.newLaunch(ctx)
	if l.err == nil {
		// A runtime that cannot be started here is started again by Start,
		// which reports the failure.
		cfg := e.init.cfg
		if p, err := cfg.Runtime.ReadyExec(cfg.ID, e.execOpts(l)); err == nil {
			l.pending = p
		}
	}
	e.launch = l
	// Its stdio is there for CloseIO and ResizePty before Start.
	e.setStarted(0, l.streams)
}

// Abort drops what Prepare readied for an exec that will not start (its
// container is going); Delete does the rest.
func (e *Exec) Abort() {
	e.op.Lock()
	defer e.op.Unlock()
	if l := e.launch; l != nil && l.pending != nil {
		l.pending.Abort()
		l.pending = nil
	}
}

// newLaunch sets up the exec's stdio; a failure is kept in the launch.
func (e *Exec) newLaunch(ctx context.Context) *execLaunch {
	cfg := e.init.cfg
	l := &execLaunch{pidFile: filepath.Join(cfg.Bundle, fmt.Sprintf(".exec-%s.pid", e.ID))}
	l.streams, l.console, l.err = setupIO(ctx, e.Config, cfg.IOOptions, cfg.Starter, cfg.ConsoleDir)
	return l
}

func (e *Exec) execOpts(l *execLaunch) ExecOpts {
	opts := ExecOpts{PidFile: l.pidFile}
	if l.console != nil {
		opts.ConsoleSocket = l.console.Path()
	} else {
		opts.Stdio = runtimeStdio(l.streams)
	}
	return opts
}

// Start runs the exec and returns its pid: the process is running. If a
// step fails after the process started, the process is killed: a failed
// Start leaves nothing running, and the exec stays Created for containerd
// to delete. hooks: see Hooks.
func (e *Exec) Start(ctx context.Context, hooks Hooks) (int, error) {
	e.op.Lock()
	defer e.op.Unlock()
	if _, err := e.begin("start", Created); err != nil {
		return 0, err
	}
	hooks.owned()
	l := e.launch
	e.launch = nil
	if l == nil { // a Start before failed and released the launch
		l = e.newLaunch(ctx)
		e.setStarted(0, l.streams)
	}
	pid, err := e.run(ctx, l)
	if err != nil {
		l.release()
		return 0, err
	}
	e.setStarted(pid, l.streams)
	e.move(Running)
	hooks.started(pid)
	return pid, nil
}

// run hands the spec to the runtime and finishes the process's stdio.
func (e *Exec) run(ctx context.Context, l *execLaunch) (int, error) {
	if l.err != nil {
		return 0, fmt.Errorf("set up stdio of exec %s: %w", e.ID, l.err)
	}
	defer os.Remove(l.pidFile)
	spec := e.spec
	if size := e.consoleSize(); size != nil && spec.Terminal {
		// Sized before it started (nerdctl exec -it resizes before Start):
		// the runtime makes the terminal that size from the start.
		withSize := *spec
		withSize.ConsoleSize = size
		spec = &withSize
	}
	err := ErrPendingGone
	if l.pending != nil {
		err = l.pending.Run(spec)
		l.pending = nil
	}
	if errors.Is(err, ErrPendingGone) {
		cfg := e.init.cfg
		err = cfg.Runtime.Exec(ctx, cfg.ID, spec, e.execOpts(l))
	}
	if err != nil {
		return 0, err
	}
	pid, err := ReadPidFile(l.pidFile)
	if err != nil {
		// The runtime started it, but where it is cannot be known.
		slog.Error("exec started but its pid is unknown: it is not tracked", "exec", e.ID, "container", e.init.ID, "error", err)
		return 0, fmt.Errorf("pid of exec %s: %w", e.ID, err)
	}
	// Stdin becomes writable for the client at Start, not at Exec, as with
	// the reference shim (see OpenStdin).
	err = l.streams.OpenStdin()
	if err == nil {
		err = attachIO(ctx, l.streams, l.console)
	}
	if err == nil {
		err = fault.Check("process.exec-started")
	}
	if err != nil {
		e.killStarted(pid)
		return 0, fmt.Errorf("attach stdio of exec %s: %w", e.ID, err)
	}
	return pid, nil
}

// killStarted kills the process of an exec whose Start failed after the
// runtime started it. Its exit is not the exec's to publish: the exec never
// started, as far as containerd knows.
func (e *Exec) killStarted(pid int) {
	if err := e.init.cfg.Children.Signal(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		slog.Error("kill the process of an exec whose start failed", "exec", e.ID, "pid", pid, "error", err)
	}
}

// Kill signals the exec's process. It takes no operation lock.
func (e *Exec) Kill(sig int) error {
	e.mu.Lock()
	s, pid := e.status, e.pid
	e.mu.Unlock()
	switch s {
	case Created:
		return fmt.Errorf("kill exec %s: %w: it has not started", e.ID, ErrWrongState)
	case Stopped, Deleted:
		return stateError("kill", e.ID, s)
	}
	if err := e.init.cfg.Children.Signal(pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill exec %s: %w", e.ID, ErrExited)
		}
		return fmt.Errorf("kill exec %s (pid %d): %w", e.ID, pid, err)
	}
	return nil
}

// Delete releases the exec's stdio, and what Prepare readied if it never
// started. Allowed once it has stopped, or if it never started; a second
// Delete finds it deleted.
func (e *Exec) Delete() error {
	e.op.Lock()
	defer e.op.Unlock()
	if _, err := e.begin("delete", Created, Stopped); err != nil {
		return err
	}
	if l := e.launch; l != nil {
		e.launch = nil
		l.release()
	}
	e.drainIO(ioDrainTimeout)
	e.markDeleted()
	return nil
}
