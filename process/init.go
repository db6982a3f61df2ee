package process

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// ioDrainTimeout bounds how long Delete waits for output still in flight: a
// background child of the container can hold the pipes open forever.
const ioDrainTimeout = 2 * time.Second

// InitConfig is what a container's init needs to be created.
type InitConfig struct {
	ID, Bundle   string
	Runtime      *Runtime
	Stdio        stdio.Config
	IOOptions    stdio.Options
	Starter      stdio.Starter // starts logger children through the reaper
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
	streams, console, err := setupIO(ctx, i.cfg.Stdio, i.cfg.IOOptions, i.cfg.Starter, i.cfg.ConsoleDir)
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
		opts.Stdio = runtimeStdio(streams)
	}
	if err := i.cfg.Runtime.Create(ctx, i.ID, opts); err != nil {
		closeIO(streams, console)
		return err
	}
	if err := attachIO(ctx, streams, console); err != nil {
		closeIO(streams, console)
		return fmt.Errorf("attach stdio of %s: %w", i.ID, err)
	}
	pid, err := ReadPidFile(pidFile)
	if err != nil {
		closeIO(streams, console)
		return err
	}
	i.io = streams
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

func setupIO(ctx context.Context, cfg stdio.Config, opts stdio.Options, start stdio.Starter, consoleDir string) (*stdio.Process, *stdio.ConsoleSocket, error) {
	streams, err := stdio.New(ctx, cfg, opts, start)
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Terminal {
		return streams, nil, nil
	}
	console, err := stdio.NewConsoleSocket(consoleDir)
	if err != nil {
		streams.Close()
		return nil, nil, fmt.Errorf("console socket: %w", err)
	}
	return streams, console, nil
}

func runtimeStdio(p *stdio.Process) Stdio {
	in, out, errf := p.RuntimeStdio()
	return Stdio{Stdin: in, Stdout: out, Stderr: errf}
}

// attachIO finishes stdio once the runtime has started the process: the
// shim's copies of the container's pipe ends are closed and the copies start,
// or the pty master the runtime sent is received and copied.
func attachIO(ctx context.Context, streams *stdio.Process, console *stdio.ConsoleSocket) error {
	streams.CloseRuntimeEnds()
	if console == nil {
		return streams.Start()
	}
	defer console.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	master, err := console.ReceiveMaster(rctx)
	if err != nil {
		return fmt.Errorf("receive pty master: %w", err)
	}
	return streams.SetConsole(master)
}

func closeIO(streams *stdio.Process, console *stdio.ConsoleSocket) {
	if console != nil {
		console.Close()
	}
	if streams != nil {
		streams.Close()
	}
}
