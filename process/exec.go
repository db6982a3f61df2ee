package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pio "github.com/podv2/containerd-shim-pod-v2/io"
)

// Exec is an additional process run in a container.
type Exec struct {
	Process
	init *Init
	spec *specs.Process
}

// NewExec returns an exec process of init's container, not yet started.
func NewExec(init *Init, id string, spec *specs.Process, stdio pio.Config) *Exec {
	return &Exec{Process: newProcess(id, stdio), init: init, spec: spec}
}

// Start runs the runtime's exec; the process is running when it returns.
func (e *Exec) Start(ctx context.Context) error {
	if s := e.Status(); s != Created {
		return stateError("start", e.ID, s)
	}
	cfg := e.init.cfg
	pidFile := filepath.Join(cfg.Bundle, fmt.Sprintf(".exec-%s.pid", e.ID))
	defer os.Remove(pidFile)
	stdio, console, err := setupIO(ctx, e.Config, cfg.IOOptions, cfg.Starter, cfg.ConsoleDir)
	if err != nil {
		return fmt.Errorf("set up stdio of exec %s: %w", e.ID, err)
	}
	opts := ExecOpts{PidFile: pidFile}
	if console != nil {
		opts.ConsoleSocket = console.Path()
	} else {
		opts.Stdio = runtimeStdio(stdio)
	}
	if err := cfg.Runtime.Exec(ctx, cfg.ID, e.spec, cfg.Bundle, opts); err != nil {
		closeIO(stdio, console)
		return err
	}
	pid, err := ReadPidFile(pidFile)
	if err != nil {
		closeIO(stdio, console)
		return err
	}
	e.setPid(pid)
	if err := attachIO(ctx, stdio, console); err != nil {
		closeIO(stdio, console)
		return fmt.Errorf("attach stdio of exec %s: %w", e.ID, err)
	}
	e.io = stdio
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

// Delete releases the exec's stdio. Allowed once it has stopped, or if it never started.
func (e *Exec) Delete() error {
	e.mu.Lock()
	s := e.status
	if s != Stopped && s != Created {
		e.mu.Unlock()
		return stateError("delete", e.ID, s)
	}
	e.status = Deleted
	e.mu.Unlock()
	e.drainIO(ioDrainTimeout)
	return nil
}
