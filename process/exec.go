package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// Exec is an additional process run in a container.
type Exec struct {
	Process
	init *Init
	spec *specs.Process

	// Guarded by Process.mu: launch is what Prepare set up, taken by Start
	// or Delete; starting is set once Start has claimed the exec, so that a
	// second Start, or a Delete, cannot race it.
	launch   *execLaunch
	starting bool
}

// execLaunch is an exec made ready ahead of Start: its stdio, and the
// runtime already started and waiting for the spec (nil if that failed:
// Start then starts one itself).
type execLaunch struct {
	streams *stdio.Process
	console *stdio.ConsoleSocket
	pending *PendingExec
	pidFile string
	err     error // setting up stdio failed; Start reports it
}

// release undoes a launch that will not start.
func (l *execLaunch) release() {
	if l.pending != nil {
		l.pending.Abort()
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
	l := e.newLaunch(ctx)
	if l.err == nil {
		// A runtime that cannot be started here is started again by Start,
		// which reports the failure.
		cfg := e.init.cfg
		l.pending, _ = cfg.Runtime.ReadyExec(cfg.ID, e.execOpts(l))
	}
	e.mu.Lock()
	e.launch = l
	e.mu.Unlock()
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

// claim marks the exec as being started and takes the prepared launch
// (nil if there is none).
func (e *Exec) claim() (*execLaunch, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.starting {
		return nil, fmt.Errorf("start exec %s: %w: it is already being started", e.ID, ErrWrongState)
	}
	if e.status != Created {
		return nil, stateError("start", e.ID, e.status)
	}
	e.starting = true
	l := e.launch
	e.launch = nil
	return l, nil
}

// Start runs the exec; the process is running when it returns.
func (e *Exec) Start(ctx context.Context) (retErr error) {
	l, err := e.claim()
	if err != nil {
		return err
	}
	if l == nil {
		l = e.newLaunch(ctx)
	}
	defer func() {
		if retErr != nil {
			l.release()
			e.mu.Lock()
			e.starting = false // still Created: containerd deletes it
			e.mu.Unlock()
		}
	}()
	if l.err != nil {
		return fmt.Errorf("set up stdio of exec %s: %w", e.ID, l.err)
	}
	defer os.Remove(l.pidFile)
	err = ErrPendingGone
	if l.pending != nil {
		err = l.pending.Run(e.spec)
		l.pending = nil
	}
	if errors.Is(err, ErrPendingGone) {
		cfg := e.init.cfg
		err = cfg.Runtime.Exec(ctx, cfg.ID, e.spec, e.execOpts(l))
	}
	if err != nil {
		return err
	}
	pid, err := ReadPidFile(l.pidFile)
	if err != nil {
		return err
	}
	e.setPid(pid)
	if err := attachIO(ctx, l.streams, l.console); err != nil {
		return fmt.Errorf("attach stdio of exec %s: %w", e.ID, err)
	}
	e.io = l.streams
	_ = e.transition("start", Running, Created)
	return nil
}

// Kill signals the exec's process.
func (e *Exec) Kill(sig int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.status {
	case Created:
		return fmt.Errorf("kill exec %s: %w: it has not started", e.ID, ErrWrongState)
	case Stopped, Deleted:
		return stateError("kill", e.ID, e.status)
	}
	if err := unix.Kill(e.pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill exec %s: %w", e.ID, ErrExited)
		}
		return fmt.Errorf("kill exec %s (pid %d): %w", e.ID, e.pid, err)
	}
	return nil
}

// Delete releases the exec's stdio, and what Prepare readied if it never
// started. Allowed once it has stopped, or if it never started.
func (e *Exec) Delete() error {
	e.mu.Lock()
	s := e.status
	if s != Stopped && s != Created {
		e.mu.Unlock()
		return stateError("delete", e.ID, s)
	}
	if s == Created && e.starting {
		e.mu.Unlock()
		return fmt.Errorf("delete exec %s: %w: it is being started", e.ID, ErrWrongState)
	}
	e.status = Deleted
	l := e.launch
	e.launch = nil
	e.mu.Unlock()
	if l != nil {
		l.release()
	}
	e.drainIO(ioDrainTimeout)
	return nil
}
