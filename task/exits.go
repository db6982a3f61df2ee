package task

import (
	"context"
	"log/slog"
	"sync"
	"time"

	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// exitRouter hands each reaped exit to the process it belongs to, once, and
// never before the event of the step that started that process is out.
//
// A process may exit before the step that started it knows its pid (the
// runtime's create or exec returns after the process ran and died): while any
// such step is under way, exits of unknown pids are kept, for the step to
// claim. All of that is inside during: callers cannot get the order wrong.
type exitRouter struct {
	handle func(*procRef, process.Exit)

	// mu guards byPid, pending, unclaimed, and every procRef's holding and
	// held.
	mu    sync.Mutex
	byPid map[int]*procRef
	// pending counts steps under way in during; while it is not 0, exits
	// of pids nobody claimed yet are kept in unclaimed.
	pending   int
	unclaimed map[int]process.Exit
}

// procRef is how an exit finds its process.
type procRef struct {
	c    *container
	exec *execProc // nil for the container's init
	// holding is set while a step of the process is under way: its exit
	// waits in held until the step's event is out.
	holding bool
	held    *process.Exit
}

func newExitRouter(handle func(*procRef, process.Exit)) *exitRouter {
	return &exitRouter{handle: handle, byPid: make(map[int]*procRef), unclaimed: make(map[int]process.Exit)}
}

// route takes every exit the reaper reports.
func (r *exitRouter) route(exits <-chan process.Exit) {
	for e := range exits {
		r.mu.Lock()
		ref, ok := r.byPid[e.Pid]
		switch {
		case !ok:
			if r.pending > 0 {
				r.unclaimed[e.Pid] = e
			}
			ref = nil
		case ref.holding:
			delete(r.byPid, e.Pid)
			ref.held = &e
			ref = nil
		default:
			delete(r.byPid, e.Pid)
		}
		r.mu.Unlock()
		if ref != nil {
			r.handle(ref, e)
		}
	}
}

// during runs step, a step of ref's process that may start it (create,
// start, exec start), giving it the hooks the process package's operations
// take (process.Hooks). Once the step owns the process (Owned), the
// process's exit is handled exactly once, and only after announce (the
// step's event) has run: an exit that comes during the step, even before its
// pid is known, is held until the step returns. An exit that comes before
// the step owns the process is handled as usual: it cannot be held for a
// step that waits for another operation, which may be waiting for that very
// exit (a Delete of a created container waits for the init its runtime
// killed). announce runs, with the pid, once the process runs (Started),
// while the step still owns the process, so that the event of a later
// operation (a Pause) comes after it; it runs only if the step succeeds. If
// the step fails, the process is left to its own exit: a pid the step did
// not announce is nobody's, and a process that was already known (an init
// whose start failed) has its exit handled as usual.
func (r *exitRouter) during(ref *procRef, step func(process.Hooks) error, announce func(pid int)) error {
	r.mu.Lock()
	r.pending++
	r.mu.Unlock()
	hooks := process.Hooks{
		Owned: func() {
			r.mu.Lock()
			ref.holding = true
			r.mu.Unlock()
		},
		Started: func(pid int) {
			r.mu.Lock()
			if pid > 0 && ref.held == nil && r.byPid[pid] != ref {
				if e, ok := r.unclaimed[pid]; ok {
					delete(r.unclaimed, pid)
					ref.held = &e
				} else {
					r.byPid[pid] = ref
				}
			}
			r.mu.Unlock()
			announce(pid)
		},
	}

	err := step(hooks)

	r.mu.Lock()
	r.pending--
	if r.pending == 0 {
		clear(r.unclaimed)
	}
	ref.holding = false
	held := ref.held
	ref.held = nil
	r.mu.Unlock()
	if held != nil {
		r.handle(ref, *held)
	}
	return err
}

// forget drops every route to a container's processes.
func (r *exitRouter) forget(c *container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid, ref := range r.byPid {
		if ref.c == c {
			delete(r.byPid, pid)
		}
	}
}

// exitOrder orders a container's exit events: every exec's before init's.
type exitOrder struct {
	// mu guards running, initReaped and heldInit.
	mu sync.Mutex
	// running counts execs from just before their start until their exit
	// was handled or their start failed; each is counted out exactly once.
	running int
	// initReaped is set once init's exit is reaped, before what is left of
	// a container without a pid namespace of its own is killed.
	initReaped bool
	heldInit   *process.Exit
}

// initGone notes that init's exit was reaped.
func (o *exitOrder) initGone() {
	o.mu.Lock()
	o.initReaped = true
	o.mu.Unlock()
}

// initWasReaped tells whether init's exit was reaped.
func (o *exitOrder) initWasReaped() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.initReaped
}

// execStarting counts an exec in before its start.
func (o *exitOrder) execStarting() {
	o.mu.Lock()
	o.running++
	o.mu.Unlock()
}

// execDone counts an exec out and returns init's exit if it was waiting
// for this one.
func (o *exitOrder) execDone() *process.Exit {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running--
	if o.running > 0 || o.heldInit == nil {
		return nil
	}
	held := o.heldInit
	o.heldInit = nil
	return held
}

// initExit returns whether init's exit may be handled now; if not it is
// held until the last running exec is done.
func (o *exitOrder) initExit(e process.Exit) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running > 0 {
		o.heldInit = &e
		return false
	}
	return true
}

// exited handles a reaped exit of one of the pod's processes.
func (s *Service) exited(ref *procRef, e process.Exit) {
	c := ref.c
	if ref.exec != nil {
		ref.exec.SetExited(e.Status, e.Timestamp, func() { s.publishExit(c.id, ref.exec.ID, e) })
		if held := c.order.execDone(); held != nil {
			s.initExited(c, *held)
		}
		return
	}
	c.order.initGone()
	if c.killAllOnExit {
		// Without its own pid namespace, the rest of the container does
		// not die with init: their exits (execs') come before init's.
		// An exec that joins after this kill is killed by startExec.
		s.killRest(c)
	}
	if c.order.initExit(e) {
		s.initExited(c, e)
	}
}

// killRest kills what is left of a container whose init is gone.
func (s *Service) killRest(c *container) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.init.KillAll(ctx); err != nil {
		slog.Debug("kill remaining processes after init exit", "id", c.id, "error", err)
	}
}

// initExited records and publishes init's exit, once.
func (s *Service) initExited(c *container, e process.Exit) {
	if c.cgroup != nil {
		// An OOM kill is published before the exit it caused.
		c.cgroup.FlushOOM(e.Status == 128+int(unix.SIGKILL))
	}
	c.init.SetExited(e.Status, e.Timestamp, func() { s.publishExit(c.id, c.id, e) })
}

func (s *Service) publishExit(containerID, id string, e process.Exit) {
	s.pub.Publish(TopicExit, &eventstypes.TaskExit{
		ContainerID: containerID,
		ID:          id,
		Pid:         uint32(e.Pid),
		ExitStatus:  uint32(e.Status),
		ExitedAt:    timestamppb.New(e.Timestamp),
	})
}
