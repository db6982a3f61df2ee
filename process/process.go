// Package process runs a container's init and exec processes through an OCI
// runtime, as small state machines, and reaps every child of the shim.
package process

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// Status is where a process is in its life.
type Status int

// The states. Created -> Running <-> Paused; any -> Stopped on exit;
// Stopped (or Created) -> Deleted.
const (
	Created Status = iota
	Running
	Paused
	Stopped
	Deleted
)

func (s Status) String() string {
	switch s {
	case Created:
		return "created"
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Stopped:
		return "stopped"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

var (
	// ErrRuntimeMissing: the OCI runtime binary cannot be found or run.
	ErrRuntimeMissing = errors.New("OCI runtime binary not found")
	// ErrWrongState: the operation does not apply in the process's state.
	ErrWrongState = errors.New("wrong state")
	// ErrExited: the process has already finished.
	ErrExited = errors.New("process already finished")
)

// stateError says what was asked of a process in which state.
func stateError(op, id string, s Status) error {
	if s == Stopped || s == Deleted {
		return fmt.Errorf("%s %s: %w (status %s)", op, id, ErrExited, s)
	}
	return fmt.Errorf("cannot %s %s while it is %s: %w", op, id, s, ErrWrongState)
}

// Process is what init and exec processes share: identity, status, exit and stdio.
type Process struct {
	ID     string // the container id for init, the exec id for an exec
	Config stdio.Config

	// mu guards status, pid, exitStatus and exitedAt; exited is closed once,
	// when status becomes Stopped.
	mu         sync.Mutex
	status     Status
	pid        int
	exitStatus int
	exitedAt   time.Time
	exited     chan struct{}

	io *stdio.Process
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

// SetExited records the exit. It reports false if the process had already exited.
func (p *Process) SetExited(status int, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == Stopped || p.status == Deleted {
		return false
	}
	p.status = Stopped
	p.exitStatus = status
	p.exitedAt = at
	close(p.exited)
	return true
}

// transition moves from one of the allowed states to the next.
func (p *Process) transition(op string, to Status, from ...Status) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range from {
		if p.status == f {
			p.status = to
			return nil
		}
	}
	return stateError(op, p.ID, p.status)
}

func (p *Process) setPid(pid int) {
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
}

// IO returns the process's stdio, nil before it is set up.
func (p *Process) IO() *stdio.Process { return p.io }

// CloseStdin closes the process's stdin as containerd's CloseIO asks.
func (p *Process) CloseStdin() error {
	if p.io == nil {
		return nil
	}
	return p.io.CloseStdin()
}

// Resize resizes the process's terminal.
func (p *Process) Resize(width, height uint32) error {
	if p.io == nil || !p.Config.Terminal {
		return fmt.Errorf("resize %s: %w: the process has no terminal", p.ID, ErrWrongState)
	}
	return p.io.Resize(width, height)
}

// drainIO waits, bounded, for the output to reach the client, then releases the stdio.
func (p *Process) drainIO(timeout time.Duration) {
	if p.io == nil {
		return
	}
	p.io.Wait(timeout)
	p.io.Close()
}
