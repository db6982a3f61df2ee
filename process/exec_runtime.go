package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// pendingExecTimeout bounds how long a started runtime waits for its process
// spec. A client that never starts its exec costs a waiting runtime process
// for this long; starting it later falls back to a fresh runtime.
const pendingExecTimeout = 30 * time.Second

// maxPendingExecs bounds the runtimes waiting for a spec at once in one
// shim: each is a process of its own (a few MB). Past it, an exec is not
// readied ahead and Start runs its runtime from scratch.
const maxPendingExecs = 16

// pendingExecs counts the runtimes waiting for a spec.
var pendingExecs atomic.Int32

// ErrTooManyPending: maxPendingExecs runtimes already wait.
var ErrTooManyPending = errors.New("too many runtime execs waiting for their spec")

// minPipeCapacity is what a pipe holds before a write blocks, at the least
// (a root-owned pipe is never shrunk below the default 16 pages).
const minPipeCapacity = 16 * 4096

// specFD is where the runtime finds the read end of the spec pipe: the first
// of its ExtraFiles. The runtime's own child (`runc init`) gets its sync pipes
// dup'ed onto fds from 3 up, so this one never reaches the container.
const specFD = 3

// PendingExec is a runtime `exec --detach` started before its process is
// known. The runtime starts up (a Go program loading the container's state)
// and then blocks reading the process spec from a pipe: nothing has happened
// to the container until Run hands the spec over. Starting it when containerd
// adds the exec lets that start-up overlap the client's round trips to Start.
type PendingExec struct {
	r    *Runc
	call *runtimeCall

	// specR is the shim's copy of the pipe's read end: what is still in the
	// pipe after the runtime failed tells whether it read the spec at all.
	specR *os.File

	// mu guards state, spec and timer: a pending exec is either run or
	// aborted, once.
	mu      sync.Mutex
	state   pendingState
	spec    *os.File // the write end of the spec pipe
	timer   *time.Timer
	counted bool // in pendingExecs while waiting
}

// leave moves a waiting exec to state to (run or aborted) and hands over
// the spec pipe's write end; false if it no longer waits.
func (p *PendingExec) leave(to pendingState) (*os.File, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pendingWaiting {
		return nil, false
	}
	p.state = to
	p.timer.Stop()
	if p.counted {
		pendingExecs.Add(-1)
	}
	w := p.spec
	p.spec = nil
	return w, true
}

type pendingState int

const (
	pendingWaiting pendingState = iota // the runtime waits for the spec
	pendingRun                         // Run took it
	pendingAborted                     // killed: Run reports ErrPendingGone
)

// ErrPendingGone is returned by Run when the pending runtime ended without
// reading the spec: it was aborted (it waited too long), or it failed on the
// container's state as it was when it started (paused then, running now).
// The container is untouched; the caller starts a fresh runtime.
var ErrPendingGone = errors.New("pending runtime exec ended before reading its process spec")

// goneError is ErrPendingGone for a runtime that failed before reading the
// spec, with its failure: a runtime started for a Start and failing so is
// the answer to that Start (see Runc.Exec).
type goneError struct{ err error }

func (e *goneError) Error() string        { return fmt.Sprintf("%v: %v", ErrPendingGone, e.err) }
func (e *goneError) Is(target error) bool { return target == ErrPendingGone }
func (e *goneError) Unwrap() error        { return e.err }

// ReadyExec is StartExec for an exec readied ahead of its Start: at most
// maxPendingExecs of them wait at once.
func (r *Runc) ReadyExec(id string, o ExecOpts) (Pending, error) {
	if pendingExecs.Add(1) > maxPendingExecs {
		pendingExecs.Add(-1)
		return nil, ErrTooManyPending
	}
	p, err := r.StartExec(id, o)
	if err != nil {
		pendingExecs.Add(-1)
		return nil, err
	}
	p.counted = true
	return p, nil
}

// StartExec starts `exec --detach` reading its process spec from a pipe.
// The process's stdio in o goes to the runtime now.
func (r *Runc) StartExec(id string, o ExecOpts) (*PendingExec, error) {
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec process spec pipe: %w", err)
	}
	args := []string{"exec", "--detach", "--process", fmt.Sprintf("/proc/self/fd/%d", specFD)}
	if o.PidFile != "" {
		args = append(args, "--pid-file", o.PidFile)
	}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	// Not the request's context: the runtime outlives the Exec request.
	cmd := r.command(context.Background(), append(args, id)...)
	null, err := setStdio(cmd, o.Stdio)
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{specR}
	call, err := r.start(cmd, "exec")
	null.Close() // the runtime holds its own copy now
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	p := &PendingExec{r: r, call: call, specR: specR, spec: specW}
	p.timer = time.AfterFunc(pendingExecTimeout, p.Abort)
	return p, nil
}

// Run hands the runtime the process spec and waits for it to exit: the
// process is running when Run returns nil.
func (p *PendingExec) Run(spec *specs.Process) error {
	data, err := json.Marshal(spec)
	if err != nil {
		p.Abort()
		return fmt.Errorf("marshal exec process spec: %w", err)
	}
	w, ok := p.leave(pendingRun)
	if !ok {
		return ErrPendingGone
	}

	// The write end is closed once the spec is in: a runtime may read to
	// EOF. A spec that fits in the pipe is written at once; a larger one is
	// written as the runtime reads, and if the runtime dies first, closing
	// the shim's read end below ends that write.
	written := make(chan struct{})
	write := func() {
		defer close(written)
		w.Write(data)
		w.Close()
	}
	if len(data) <= minPipeCapacity {
		write()
	} else {
		go write()
	}
	var stdout, stderr bytes.Buffer // the process's stdio is the runtime's: nothing lands here
	// From here the runtime's time is on the request's path; its start-up
	// before was not.
	p.call.started = time.Now()
	err = p.r.wait(p.call, &stdout, &stderr)
	unread := -1
	if err != nil {
		unread, _ = unix.IoctlGetInt(int(p.specR.Fd()), unix.TIOCINQ)
	}
	p.specR.Close()
	<-written
	if unread == len(data) {
		return &goneError{err: err}
	}
	return err
}

// Abort ends a pending exec that will not run: the runtime is killed before
// it has read a spec, so the container is untouched. Safe to call more than
// once, and after Run (then it does nothing).
func (p *PendingExec) Abort() {
	w, ok := p.leave(pendingAborted)
	if !ok {
		return
	}
	p.call.cmd.Process.Kill()
	w.Close()
	p.specR.Close()
	p.r.Children.Wait(p.call.cmd)
}
