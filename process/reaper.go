package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is one child's end, as the reaper saw it.
type Exit struct {
	Pid       int
	Status    int // exit code, or 128+signal
	Timestamp time.Time
}

// Reaper is the shim's only waiter of children. The shim is a subreaper, so the
// containers' processes become its children when their runtime exits; a
// wait4(-1) loop collects every one of them. Commands the shim runs itself
// (the runtime binary, loggers, namespace holders) are started through Start
// so that their status goes back to whoever waits for them, never lost to the
// loop. Everything else goes to the subscribers, in the order it was reaped.
type Reaper struct {
	// mu guards started, waiting and subs. Start holds it across fork, so
	// the loop cannot dispatch a command's exit before its pid is registered.
	mu sync.Mutex
	// started routes a running command's exit by pid; the entry goes when
	// the command is reaped (its pid may then be reused).
	started map[int]chan Exit
	// waiting keeps the same channel by command until Wait takes it, which
	// may be after the exit.
	waiting map[*exec.Cmd]chan Exit
	subs    []*Subscription
}

// Default returns the process's reaper, starting its SIGCHLD loop on first
// use. There is one per process: two loops would steal each other's exits.
var Default = sync.OnceValue(newReaper)

func newReaper() *Reaper {
	r := &Reaper{started: make(map[int]chan Exit), waiting: make(map[*exec.Cmd]chan Exit)}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r
}

// reap collects every child that has exited, without blocking. Each wait4
// and the dispatch of what it reaped happen under mu, so that Signal, which
// holds mu too, never sees a pid freed (and perhaps reused) under it.
func (r *Reaper) reap() {
	for r.reapOne() {
	}
}

// reapOne reaps one child; false when none is left to reap.
func (r *Reaper) reapOne() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return false
		}
		// A traced child reports its stops here even without WUNTRACED; only
		// deaths are exits.
		if ws.Exited() || ws.Signaled() {
			r.dispatchLocked(Exit{Pid: pid, Status: exitStatus(ws), Timestamp: time.Now()})
		}
		return true
	}
}

func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// dispatchLocked hands an exit to the command's waiter, or else to the
// subscribers. mu is held.
func (r *Reaper) dispatchLocked(e Exit) {
	if ch, ok := r.started[e.Pid]; ok {
		delete(r.started, e.Pid)
		ch <- e // buffered, never blocks
		return
	}
	for _, s := range r.subs {
		s.push(e)
	}
}

// Signal sends sig to pid, a child of the shim (a container process it
// became the parent of), only while that pid is still the child: alive,
// not yet reaped, so not reused by another process. A child that has
// exited (a zombie) or is gone gets ESRCH.
func (r *Reaper) Signal(pid int, sig syscall.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		if errors.Is(err, unix.ECHILD) {
			return fmt.Errorf("signal %d: not a child of the shim: %w", pid, unix.ESRCH)
		}
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	// Linux zeroes the siginfo when the child has nothing to report: it
	// runs. SIGCHLD there means it has exited and waits to be reaped.
	if info.Signo == int32(unix.SIGCHLD) {
		return fmt.Errorf("signal %d: it has exited: %w", pid, unix.ESRCH)
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// Start starts cmd so that its exit is delivered to Wait, not to subscribers.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	ch := make(chan Exit, 1)
	r.started[cmd.Process.Pid] = ch
	r.waiting[cmd] = ch
	return nil
}

// Wait waits for a command started with Start and returns its exit status.
// It also finishes the command's own I/O goroutines and releases the
// command's process (cmd.Process.Pid is -1 afterwards: keep the pid before
// if it is needed). Every Start is paired with a Wait.
func (r *Reaper) Wait(cmd *exec.Cmd) (int, error) {
	r.mu.Lock()
	ch, ok := r.waiting[cmd]
	delete(r.waiting, cmd)
	r.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("wait for pid %d: not started through the reaper", cmd.Process.Pid)
	}
	e := <-ch
	// The process is already reaped: Wait fails with ECHILD, but it still
	// waits for the goroutines copying the command's stdout and stderr.
	_ = cmd.Wait()
	// os/exec keeps a pidfd for the command, which only a successful
	// Process.Wait closes: this one failed, so without Release the pidfd
	// stays open until the garbage collector finalizes the Process, one per
	// runtime call. Released, the Process signals nothing any more (Signal
	// and Kill fail), so a reaped pid reused by another process is never
	// hit; its Pid reads -1 from here on.
	_ = cmd.Process.Release()
	return e.Status, nil
}

// Run starts cmd and waits for it.
func (r *Reaper) Run(cmd *exec.Cmd) (int, error) {
	if err := r.Start(cmd); err != nil {
		return -1, err
	}
	return r.Wait(cmd)
}

// Subscribe returns a subscription to the exits of every child not started
// through Start. Exits are queued without bound, so a slow subscriber never
// stalls the loop and never loses one.
func (r *Reaper) Subscribe() *Subscription {
	s := &Subscription{C: make(chan Exit)}
	s.cond = sync.NewCond(&s.mu)
	go s.run()
	r.mu.Lock()
	r.subs = append(r.subs, s)
	r.mu.Unlock()
	return s
}

// Subscription delivers exits on C in the order they were reaped.
type Subscription struct {
	C chan Exit

	mu    sync.Mutex // guards queue
	cond  *sync.Cond
	queue []Exit
}

func (s *Subscription) push(e Exit) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	s.cond.Signal()
}

func (s *Subscription) run() {
	for {
		s.mu.Lock()
		for len(s.queue) == 0 {
			s.cond.Wait()
		}
		e := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.C <- e
	}
}
