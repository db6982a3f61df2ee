package process

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	pio "github.com/podv2/containerd-shim-pod-v2/io"
)

// ioDrainTimeout bounds how long Delete waits for output still in flight: a
// background child of the container can hold the pipes open forever.
const ioDrainTimeout = 2 * time.Second

// InitConfig is what a container's init needs to be created.
type InitConfig struct {
	ID, Bundle   string
	Runtime      *Runtime
	Stdio        pio.Config
	IOOptions    pio.Options
	Starter      pio.Starter // starts logger children through the reaper
	NoPivot      bool
	NoNewKeyring bool
	ConsoleDir   string // private directory for console sockets
}

// Init is a container's first process; its life is the container's.
type Init struct {
	Process
	cfg InitConfig
}

// NewInit returns an init process not yet created.
func NewInit(cfg InitConfig) *Init {
	return &Init{Process: newProcess(cfg.ID, cfg.Stdio), cfg: cfg}
}

// Bundle returns the container's bundle directory.
func (i *Init) Bundle() string { return i.cfg.Bundle }

// Runtime returns the OCI runtime the container runs under.
func (i *Init) Runtime() *Runtime { return i.cfg.Runtime }

// Create sets up stdio and runs the runtime's create. The process is left
// Created, blocked until Start.
func (i *Init) Create(ctx context.Context) error {
	pidFile := filepath.Join(i.cfg.Bundle, "init.pid")
	stdio, console, err := setupIO(ctx, i.cfg.Stdio, i.cfg.IOOptions, i.cfg.Starter, i.cfg.ConsoleDir)
	if err != nil {
		return fmt.Errorf("set up stdio of %s: %w", i.ID, err)
	}
	opts := CreateOpts{
		Bundle:       i.cfg.Bundle,
		PidFile:      pidFile,
		NoPivot:      i.cfg.NoPivot,
		NoNewKeyring: i.cfg.NoNewKeyring,
	}
	if console != nil {
		opts.ConsoleSocket = console.Path()
	} else {
		opts.Stdio = runtimeStdio(stdio)
	}
	if err := i.cfg.Runtime.Create(ctx, i.ID, opts); err != nil {
		closeIO(stdio, console)
		return err
	}
	if err := attachIO(ctx, stdio, console); err != nil {
		closeIO(stdio, console)
		return fmt.Errorf("attach stdio of %s: %w", i.ID, err)
	}
	pid, err := ReadPidFile(pidFile)
	if err != nil {
		closeIO(stdio, console)
		return err
	}
	i.io = stdio
	i.setPid(pid)
	return nil
}

// Start runs the runtime's start. The caller owns what happens to an exit
// that arrives meanwhile; Start only moves Created to Running.
func (i *Init) Start(ctx context.Context) error {
	if s := i.Status(); s != Created {
		return stateError("start", i.ID, s)
	}
	if err := i.cfg.Runtime.Start(ctx, i.ID); err != nil {
		return err
	}
	// An exit may already have moved it to Stopped; that is not an error.
	_ = i.transition("start", Running, Created)
	return nil
}

// Kill signals init, or every process of the container with all.
func (i *Init) Kill(ctx context.Context, sig int, all bool) error {
	s := i.Status()
	if (s == Stopped && !all) || s == Deleted {
		return stateError("kill", i.ID, s)
	}
	err := i.cfg.Runtime.Kill(ctx, i.ID, sig, all)
	if err != nil && isNotRunning(err) {
		return fmt.Errorf("kill %s: %w", i.ID, ErrExited)
	}
	return err
}

// Delete removes the container from the runtime and releases its stdio. It
// is allowed when the container is created (it is killed) or stopped.
func (i *Init) Delete(ctx context.Context) error {
	s := i.Status()
	if s != Created && s != Stopped {
		return stateError("delete", i.ID, s)
	}
	if err := i.cfg.Runtime.Delete(ctx, i.ID, s == Created); err != nil && !IsNotExist(err) {
		return err
	}
	i.drainIO(ioDrainTimeout)
	return nil
}

// MarkDeleted ends the process's life in the shim.
func (i *Init) MarkDeleted() {
	i.mu.Lock()
	i.status = Deleted
	i.mu.Unlock()
}

// Pause freezes the container.
func (i *Init) Pause(ctx context.Context) error {
	if err := i.transition("pause", Paused, Running); err != nil {
		return err
	}
	if err := i.cfg.Runtime.Pause(ctx, i.ID); err != nil {
		_ = i.transition("pause", Running, Paused)
		return err
	}
	return nil
}

// Resume thaws a paused container.
func (i *Init) Resume(ctx context.Context) error {
	if s := i.Status(); s != Paused {
		return stateError("resume", i.ID, s)
	}
	if err := i.cfg.Runtime.Resume(ctx, i.ID); err != nil {
		return err
	}
	_ = i.transition("resume", Running, Paused)
	return nil
}

// isNotRunning recognises the runtime's word for a container that has no
// process left to signal.
func isNotRunning(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "not running") || strings.Contains(msg, "process already finished") ||
		strings.Contains(msg, "no such process")
}

// IsNotExist recognises the runtime's word for a container it does not know.
func IsNotExist(err error) bool {
	return strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "not exist")
}

func setupIO(ctx context.Context, cfg pio.Config, opts pio.Options, start pio.Starter, consoleDir string) (*pio.Process, *pio.ConsoleSocket, error) {
	stdio, err := pio.New(ctx, cfg, opts, start)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Terminal {
		return stdio, nil, nil
	}
	console, err := pio.NewConsoleSocket(consoleDir)
	if err != nil {
		stdio.Close()
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return stdio, console, nil
}

func runtimeStdio(p *pio.Process) Stdio {
	in, out, errf := p.RuntimeStdio()
	return Stdio{Stdin: in, Stdout: out, Stderr: errf}
}

// attachIO finishes stdio once the runtime has started the process: the
// shim's copies of the container's pipe ends are closed and the copies start,
// or the pty master the runtime sent is received and copied.
func attachIO(ctx context.Context, stdio *pio.Process, console *pio.ConsoleSocket) error {
	stdio.CloseRuntimeEnds()
	if console == nil {
		return stdio.Start()
	}
	defer console.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	master, err := console.ReceiveMaster(rctx)
	if err != nil {
		return fmt.Errorf("receive pty master: %w", err)
	}
	return stdio.SetConsole(master)
}

func closeIO(stdio *pio.Process, console *pio.ConsoleSocket) {
	if console != nil {
		console.Close()
	}
	if stdio != nil {
		stdio.Close()
	}
}
