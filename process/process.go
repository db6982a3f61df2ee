// Package process runs a container's init and exec processes through an OCI
// runtime, as small state machines, and reaps every child of the shim.
//
// Each process has one state machine (status.go): an operation that changes
// its state (create, start, pause, resume, delete) holds the process's
// operation lock from the check of the state it starts from, across the
// runtime call, to the state it leaves, so that two operations never
// interleave and each sees what the last one left. An exit is recorded with
// SetExited, which never waits for that lock: the path that reaps exits never
// waits for a runtime call.
package process

import (
	"errors"
	"fmt"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

var (
	// ErrRuntimeMissing: the OCI runtime binary cannot be found or run.
	ErrRuntimeMissing = errors.New("OCI runtime binary not found")
	// ErrWrongState: the operation does not apply in the process's state.
	ErrWrongState = errors.New("wrong state")
	// ErrExited: the process has already finished.
	ErrExited = errors.New("process already finished")
	// ErrDeleted: the process was deleted; it is no more.
	ErrDeleted = errors.New("process deleted")
)

// stateError says what was asked of a process in which state.
func stateError(op, id string, s Status) error {
	switch s {
	case Deleted:
		return fmt.Errorf("%s %s: %w", op, id, ErrDeleted)
	case Stopped:
		return fmt.Errorf("%s %s: %w (status %s)", op, id, ErrExited, s)
	}
	return fmt.Errorf("cannot %s %s while it is %s: %w", op, id, s, ErrWrongState)
}

// Process is what init and exec processes share: identity, state, exit and
// stdio.
type Process struct {
	ID     string // the container id for init, the exec id for an exec
	Config stdio.Config

	// op serialises the operations that change the state (see the package
	// comment). Taken before mu, never by the exit path.
	op sync.Mutex

	// mu guards status, pid, exitStatus, exitedAt, io and size; exited is
	// closed once, by SetExited after status first became Stopped (once the
	// exit is announced), or by markDeleted for a process that never
	// stopped.
	mu         sync.Mutex
	status     Status
	pid        int
	exitStatus int
	exitedAt   time.Time
	exited     chan struct{}
	io         *stdio.Process
	size       *specs.Box // the terminal size last asked for
}

func newProcess(id string, cfg stdio.Config) Process {
	return Process{ID: id, Config: cfg, exited: make(chan struct{})}
}

// Pid returns the process's pid, 0 before it has one.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Status returns the current status.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// ExitInfo returns the exit status and time; zero before the process exits.
func (p *Process) ExitInfo() (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitStatus, p.exitedAt
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// SetExited records the exit, then runs announce (the exit's event), then
// wakes those waiting on Exited: whoever waited for the exit acts after its
// event (a Delete publishes its own after it). It reports false, and runs
// nothing, if the process had already exited (or was deleted): an exit is
// recorded and announced once.
func (p *Process) SetExited(status int, at time.Time, announce func()) bool {
	p.mu.Lock()
	if p.status == Stopped || p.status == Deleted {
		p.mu.Unlock()
		return false
	}
	p.status = Stopped
	p.exitStatus = status
	p.exitedAt = at
	p.mu.Unlock()
	// Stopped from now on: markDeleted leaves exited to this.
	if announce != nil {
		announce()
	}
	close(p.exited)
	return true
}

// Hooks let the caller of an operation that starts a process (Create,
// Start) order the process's events:
//
//   - Owned is called once the operation holds the process: its operation
//     lock taken, the state it starts from checked, before the runtime is
//     called. From then until the operation returns nothing else changes the
//     process, so the caller may hold the process's exit back until the
//     step's event is out. It is not called if the operation never got to
//     hold the process (another one left it in a state it cannot start
//     from): holding the exit for it could stall that other operation,
//     which may be waiting for the exit.
//   - Started is called with the pid once the process runs, before the
//     operation lets go of the process: the step's event, published there,
//     comes before the event of any later operation (a Pause). It is called
//     only if the operation succeeds.
//
// A nil func is skipped.
type Hooks struct {
	Owned   func()
	Started func(pid int)
}

func (h Hooks) owned() {
	if h.Owned != nil {
		h.Owned()
	}
}

func (h Hooks) started(pid int) {
	if h.Started != nil {
		h.Started(pid)
	}
}

// begin checks, with the operation lock held, that the process is in one of
// the states op may start from. A stopped process is in the wrong state for
// op (it is still there: containerd deletes it); a deleted one is gone.
func (p *Process) begin(op string, from ...Status) (Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range from {
		if p.status == f {
			return f, nil
		}
	}
	if p.status == Deleted {
		return p.status, stateError(op, p.ID, p.status)
	}
	return p.status, fmt.Errorf("cannot %s %s while it is %s: %w", op, p.ID, p.status, ErrWrongState)
}

// move sets the state op leads to, unless an exit came meanwhile: a process
// that stopped stays stopped.
func (p *Process) move(to Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != Stopped && p.status != Deleted {
		p.status = to
	}
}

// markDeleted ends the process's life in the shim. The operation lock is held.
func (p *Process) markDeleted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != Stopped && p.status != Deleted {
		close(p.exited) // nobody waits in vain on a process that is gone
	}
	p.status = Deleted
}

func (p *Process) setStarted(pid int, io *stdio.Process) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pid = pid
	p.io = io
}

func (p *Process) stdio() *stdio.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.io
}

// CloseStdin closes the process's stdin as containerd's CloseIO asks.
func (p *Process) CloseStdin() error {
	if io := p.stdio(); io != nil {
		return io.CloseStdin()
	}
	return nil
}

// Resize resizes the process's terminal. Before the terminal exists (an
// exec not started yet), the size is kept and set when it comes.
func (p *Process) Resize(width, height uint32) error {
	if !p.Config.Terminal {
		return fmt.Errorf("resize %s: %w: the process has no terminal", p.ID, ErrWrongState)
	}
	p.mu.Lock()
	p.size = &specs.Box{Width: uint(width), Height: uint(height)}
	io := p.io
	p.mu.Unlock()
	if io == nil {
		return nil // its stdio could not be set up: Start reports why
	}
	return io.Resize(width, height)
}

// consoleSize is the terminal size asked for so far, nil if none.
func (p *Process) consoleSize() *specs.Box {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// drainIO waits, bounded, for the output to reach the client, then releases
// the stdio.
func (p *Process) drainIO(timeout time.Duration) {
	io := p.stdio()
	if io == nil {
		return
	}
	io.Wait(timeout)
	io.Close()
}
