package process

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// ioDrainTimeout bounds how long Delete waits for output still in flight: a
// background child of the container can hold the pipes open forever.
const ioDrainTimeout = 2 * time.Second

// InitConfig is what a container's init needs to be created.
type InitConfig struct {
	ID, Bundle   string
	Runtime      Runtime
	Children     Children // signals exec processes (see Exec.Kill)
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
func (i *Init) Runtime() Runtime { return i.cfg.Runtime }

// Create sets up stdio and runs the runtime's create, and returns the pid of
// the init, left Created, waiting for Start. A failure after the runtime
// created the container removes it again (delete --force): nothing of it is
// left, and the same id can be created again. hooks: see Hooks.
func (i *Init) Create(ctx context.Context, hooks Hooks) (pid int, retErr error) {
	i.op.Lock()
	defer i.op.Unlock()
	if _, err := i.begin("create", Created); err != nil {
		return 0, err
	}
	hooks.owned()
	pidFile := filepath.Join(i.cfg.Bundle, "init.pid")
	streams, console, err := setupIO(ctx, i.cfg.Stdio, i.cfg.IOOptions, i.cfg.Starter, i.cfg.ConsoleDir)
	if err != nil {
		return 0, fmt.Errorf("set up stdio of %s: %w", i.ID, err)
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
		return 0, err
	}
	defer func() {
		if retErr != nil {
			closeIO(streams, console)
			retErr = i.undoCreate(retErr)
		}
	}()
	// Stdin becomes writable for the client now, not before the runtime
	// created the container, as with the reference shim (see OpenStdin).
	if err := streams.OpenStdin(); err != nil {
		return 0, fmt.Errorf("stdin of %s: %w", i.ID, err)
	}
	if err := attachIO(ctx, streams, console); err != nil {
		return 0, fmt.Errorf("attach stdio of %s: %w", i.ID, err)
	}
	pid, err = ReadPidFile(pidFile)
	if err == nil {
		err = fault.Check("process.pidfile")
	}
	if err != nil {
		return 0, fmt.Errorf("pid of %s: %w", i.ID, err)
	}
	i.setStarted(pid, streams)
	hooks.started(pid)
	return pid, nil
}

// undoCreate removes a container the runtime created but the shim could not
// finish. The request may be cancelled: the removal is not.
func (i *Init) undoCreate(cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := i.cfg.Runtime.Delete(ctx, i.ID, true); err != nil && !IsNotExist(err) {
		return errors.Join(cause, fmt.Errorf("remove half-created container %s: %w", i.ID, err))
	}
	return cause
}

// Start runs the runtime's start and returns the init's pid. An exit that
// arrives while Start holds the process is the caller's to order after the
// start (see Hooks, and task's exit router); a Start that found the init
// gone is not an error.
func (i *Init) Start(ctx context.Context, hooks Hooks) (int, error) {
	i.op.Lock()
	defer i.op.Unlock()
	if _, err := i.begin("start", Created); err != nil {
		return 0, err
	}
	hooks.owned()
	if err := i.cfg.Runtime.Start(ctx, i.ID); err != nil {
		return 0, err
	}
	// Announced before it is Running: what needs a running container
	// (an exec) comes after the start's event.
	pid := i.Pid()
	hooks.started(pid)
	i.move(Running)
	return pid, nil
}

// Kill signals init, or with all every process of the container. It takes
// no operation lock: a kill must reach a container whose start hangs.
func (i *Init) Kill(ctx context.Context, sig int, all bool) error {
	s := i.Status()
	if (s == Stopped && !all) || s == Deleted {
		return stateError("kill", i.ID, s)
	}
	err := i.cfg.Runtime.Kill(ctx, i.ID, sig, all)
	if err != nil && (isNotRunning(err) || IsNotExist(err)) {
		return fmt.Errorf("kill %s: %w", i.ID, ErrExited)
	}
	return err
}

// KillAll kills every process left in the container, for the exit path
// (init gone, no pid namespace of its own to take the rest with it).
func (i *Init) KillAll(ctx context.Context) error {
	return i.cfg.Runtime.Kill(ctx, i.ID, int(unix.SIGKILL), true)
}

// Delete removes the container from the runtime, releases its stdio, runs
// teardown (the caller's part: mounts, events) and ends the init's life. It
// is allowed when the container is created (the runtime kills it) or
// stopped; a second Delete finds it deleted. A failing teardown leaves the
// init stopped, so that Delete can be tried again.
func (i *Init) Delete(ctx context.Context, teardown func() error) error {
	i.op.Lock()
	defer i.op.Unlock()
	from, err := i.begin("delete", Created, Stopped)
	if err != nil {
		return err
	}
	if err := i.cfg.Runtime.Delete(ctx, i.ID, from == Created); err != nil && !IsNotExist(err) {
		return err
	}
	i.drainIO(ioDrainTimeout)
	if teardown != nil {
		if err := teardown(); err != nil {
			return err
		}
	}
	i.markDeleted()
	return nil
}

// Pause freezes the container; it is Pausing during the runtime's call.
// announce (the caller's event) runs once it is paused, before any other
// operation of the process, so that events keep the order of the states.
func (i *Init) Pause(ctx context.Context, announce func()) error {
	i.op.Lock()
	defer i.op.Unlock()
	if _, err := i.begin("pause", Running); err != nil {
		return err
	}
	i.move(Pausing)
	if err := i.cfg.Runtime.Pause(ctx, i.ID); err != nil {
		i.move(Running)
		return err
	}
	i.move(Paused)
	announce()
	return nil
}

// Resume thaws a paused container; announce as for Pause.
func (i *Init) Resume(ctx context.Context, announce func()) error {
	i.op.Lock()
	defer i.op.Unlock()
	if _, err := i.begin("resume", Paused); err != nil {
		return err
	}
	if err := i.cfg.Runtime.Resume(ctx, i.ID); err != nil {
		return err
	}
	i.move(Running)
	announce()
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
	if err := fault.Check("process.attach"); err != nil {
		return err
	}
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
