package task

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// The fakes below let the task service run in-process: a world of fake
// processes that a fake OCI runtime creates and kills and a fake reaper
// reports the exits of. Nothing they do reaches a real process.

// fakePidBase is above any kernel's pid_max (at most 1<<22): a fake pid
// can never name a real process, whatever the service does with it
// (/proc lookups for cgroups, signals).
const fakePidBase = 1 << 30

// callPlan is what a test wants to happen during one runtime call that
// starts a process (create, start, exec): a failure, or the process exiting
// before the call returns.
type callPlan struct {
	fail bool // the call fails; nothing is started
	// exit: the process exits with status before the call returns; wait:
	// and the call returns only once the service's exit router took it.
	exit   bool
	status int
	wait   bool
	// initDies (exec only): the container's init exits after the runtime
	// checked that it runs and before the exec's process joins the
	// container, as with runc exec. late: and the process joins only once
	// the service killed what was left of a container without a pid
	// namespace of its own (kill --all after its init's exit).
	initDies, late bool
	// readyFail, pendingGone (exec only): the runtime readied ahead of the
	// exec's Start could not be started, or ended without its spec.
	readyFail, pendingGone bool
	// entered, gate (delete only): the call closes entered, then waits
	// for gate to close before it does anything.
	entered, gate chan struct{}
}

// String lists what the plan asks for, for a schedule's trace.
func (p callPlan) String() string {
	var parts []string
	for _, f := range []struct {
		on   bool
		name string
	}{{p.fail, "fail"}, {p.exit, fmt.Sprintf("exit %d", p.status)}, {p.wait, "routed before return"},
		{p.initDies, fmt.Sprintf("init exits %d", p.status)}, {p.late, "joins after the kill"},
		{p.readyFail, "ready fails"}, {p.pendingGone, "readied runtime gone"}} {
		if f.on {
			parts = append(parts, f.name)
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

type fakeProc struct {
	pid       int
	container string
	exec      string // "" for the container's init
	alive     bool
	status    int // once dead
}

type fakeContainer struct {
	id       string
	ownPidNS bool // its processes die with its init
	init     *fakeProc
	execs    []*fakeProc
	started  bool
	paused   bool
}

// fakeWorld is the processes and containers of one schedule.
type fakeWorld struct {
	reaper *fakeReaper

	// mu guards everything below; cond signals a kill --all.
	mu         sync.Mutex
	cond       *sync.Cond
	killAlls   map[string]int // per container, the lethal kill --all calls
	rng        *rand.Rand     // minor choices made inside calls
	nextPid    int
	procs      map[int]*fakeProc
	containers map[string]*fakeContainer // in the runtime: created, not deleted
	ownPidNS   map[string]bool           // per container id, from its spec
	plans      map[string]callPlan
	pendings   []*fakePending
	// errs are the fakes' own findings (a real pid signalled, a pending
	// exec run twice), reported by the test.
	errs []string
}

func newFakeWorld(seed uint64) *fakeWorld {
	w := &fakeWorld{
		reaper:     newFakeReaper(),
		killAlls:   make(map[string]int),
		rng:        rand.New(rand.NewPCG(seed, 0x5eed)),
		procs:      make(map[int]*fakeProc),
		containers: make(map[string]*fakeContainer),
		ownPidNS:   make(map[string]bool),
		plans:      make(map[string]callPlan),
	}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *fakeWorld) plan(key string, p callPlan) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.plans[key] = p
}

// takePlan returns the plan of a call and forgets it: a plan is for one call.
func (w *fakeWorld) takePlan(key string) callPlan {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.plans[key]
	delete(w.plans, key)
	return p
}

func (w *fakeWorld) failf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

func (w *fakeWorld) newProcLocked(container, execID string) *fakeProc {
	w.nextPid++
	p := &fakeProc{pid: fakePidBase + w.nextPid, container: container, exec: execID, alive: true}
	w.procs[p.pid] = p
	return p
}

// killLocked ends a process; the exit goes to the reaper, which reports it.
// A container's init takes the rest with it when the container has a pid
// namespace of its own; the kernel reaps them in any order.
func (w *fakeWorld) killLocked(p *fakeProc, status int) (last uint64) {
	if !p.alive {
		return 0
	}
	dying := []*fakeProc{p}
	p.alive, p.status = false, status
	if c := w.containers[p.container]; c != nil && p == c.init && c.ownPidNS {
		for _, e := range c.execs {
			if e.alive {
				e.alive, e.status = false, 128+int(unix.SIGKILL)
				dying = append(dying, e)
			}
		}
		w.rng.Shuffle(len(dying), func(i, j int) { dying[i], dying[j] = dying[j], dying[i] })
	}
	for _, d := range dying {
		last = w.reaper.push(process.Exit{Pid: d.pid, Status: d.status, Timestamp: time.Now()})
	}
	return last
}

// exitNaturally makes a live process exit by itself, as if it ended or
// crashed; it returns false if pid is not alive.
func (w *fakeWorld) exitNaturally(pid, status int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.procs[pid]
	if p == nil || !p.alive {
		return false
	}
	w.killLocked(p, status)
	return true
}

// livePids lists the processes still alive, in pid order.
func (w *fakeWorld) livePids() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var pids []int
	for pid, p := range w.procs {
		if p.alive {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func (w *fakeWorld) proc(pid int) (fakeProc, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.procs[pid]
	if !ok {
		return fakeProc{}, false
	}
	return *p, true
}

// leftovers lists what should be gone once every container was deleted.
func (w *fakeWorld) leftovers() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for pid, p := range w.procs {
		if p.alive {
			out = append(out, fmt.Sprintf("process %d (container %s exec %q) alive", pid, p.container, p.exec))
		}
	}
	for id := range w.containers {
		out = append(out, fmt.Sprintf("container %s still in the runtime", id))
	}
	for _, p := range w.pendings {
		if p.state == pendingWaitingState {
			out = append(out, fmt.Sprintf("readied runtime of exec %s in %s still waits for its spec", p.exec, p.container))
		}
	}
	return out
}

// fakeReaper is the shim's reaper in a fake world: it starts no command,
// signals only fake processes, and reports exits to its one subscriber in
// the order they happened, through a queue without bound (as the real one).
type fakeReaper struct {
	world *fakeWorld // set before the service starts (newFakeService)

	// mu guards queue, pushed, delivered, closed and sub; cond signals a
	// change of any.
	mu        sync.Mutex
	cond      *sync.Cond
	queue     []process.Exit
	pushed    uint64 // exits ever pushed
	delivered uint64 // exits the subscriber received
	closed    bool
	sub       *process.Subscription
	done      chan struct{} // closed when the delivery goroutine ends
}

func newFakeReaper() *fakeReaper {
	r := &fakeReaper{done: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	return r
}

var errNoCommands = errors.New("the fake reaper starts no commands")

func (r *fakeReaper) Start(cmd *exec.Cmd) error       { return errNoCommands }
func (r *fakeReaper) Wait(cmd *exec.Cmd) (int, error) { return -1, errNoCommands }

// Signal signals a fake process, never a real one.
func (r *fakeReaper) Signal(pid int, sig syscall.Signal) error {
	w := r.world
	if pid < fakePidBase {
		w.failf("the service signalled pid %d, which is not a fake one", pid)
		return fmt.Errorf("signal %d: %w", pid, unix.ESRCH)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.procs[pid]
	if p == nil || !p.alive {
		return fmt.Errorf("signal %d: %w", pid, unix.ESRCH)
	}
	if lethal(int(sig)) {
		w.killLocked(p, 128+int(sig))
	}
	return nil
}

// Subscribe is called once, by the service's New.
func (r *fakeReaper) Subscribe() *process.Subscription {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub != nil {
		panic("fake reaper subscribed twice")
	}
	r.sub = &process.Subscription{C: make(chan process.Exit)}
	go r.deliver(r.sub.C)
	return r.sub
}

func (r *fakeReaper) deliver(c chan process.Exit) {
	defer close(r.done)
	defer close(c)
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && !r.closed {
			r.cond.Wait()
		}
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		c <- e
		r.mu.Lock()
		r.delivered++
		r.cond.Broadcast()
		r.mu.Unlock()
	}
}

// push queues an exit and returns its number (from 1).
func (r *fakeReaper) push(e process.Exit) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append(r.queue, e)
	r.pushed++
	r.cond.Broadcast()
	return r.pushed
}

// waitDelivered waits until the subscriber received exit n.
func (r *fakeReaper) waitDelivered(n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.delivered < n && !r.closed {
		r.cond.Wait()
	}
}

// close ends the delivery (after the queue is empty), which ends the
// service's exit router.
func (r *fakeReaper) close() {
	r.mu.Lock()
	r.closed = true
	r.cond.Broadcast()
	started := r.sub != nil
	r.mu.Unlock()
	if started {
		<-r.done
	}
}

// lethal tells which signals end a fake process.
func lethal(sig int) bool {
	return sig == int(unix.SIGKILL) || sig == int(unix.SIGTERM)
}

// fakeRuntime is one container's OCI runtime in the fake world. Its errors
// use runc's words where the service reads them.
type fakeRuntime struct {
	w *fakeWorld
}

func (w *fakeWorld) newRuntime(RuntimeConfig) process.Runtime {
	return &fakeRuntime{w: w}
}

// waitRouted returns once exit n was taken by the service's router, if the
// plan asks for it.
func (f *fakeRuntime) waitRouted(p callPlan, n uint64) {
	if p.wait && n > 0 {
		f.w.reaper.waitDelivered(n)
	}
}

func writePid(path string, pid int) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o600)
}

func (f *fakeRuntime) Create(ctx context.Context, id string, o process.CreateOpts) error {
	w := f.w
	p := w.takePlan("create/" + id)
	w.mu.Lock()
	if w.containers[id] != nil {
		w.mu.Unlock()
		return fmt.Errorf("runc create failed: container with id exists: %s", id)
	}
	if p.fail {
		w.mu.Unlock()
		return errors.New("runc create failed: injected by the test")
	}
	c := &fakeContainer{id: id, ownPidNS: w.ownPidNS[id]}
	c.init = w.newProcLocked(id, "")
	w.containers[id] = c
	var n uint64
	if p.exit {
		n = w.killLocked(c.init, p.status)
	}
	pid := c.init.pid
	w.mu.Unlock()
	f.waitRouted(p, n)
	return writePid(o.PidFile, pid)
}

func (f *fakeRuntime) Start(ctx context.Context, id string) error {
	w := f.w
	p := w.takePlan("start/" + id)
	w.mu.Lock()
	c := w.containers[id]
	switch {
	case c == nil:
		w.mu.Unlock()
		return fmt.Errorf("container %s does not exist", id)
	case !c.init.alive:
		w.mu.Unlock()
		return errors.New("runc start failed: cannot start a container that has stopped")
	case c.started:
		w.mu.Unlock()
		return errors.New("runc start failed: cannot start an already running container")
	case p.fail:
		w.mu.Unlock()
		return errors.New("runc start failed: injected by the test")
	}
	c.started = true
	var n uint64
	if p.exit {
		n = w.killLocked(c.init, p.status)
	}
	w.mu.Unlock()
	f.waitRouted(p, n)
	return nil
}

// execIDOf finds the exec id in the pid file path the service chose
// (".exec-ID.pid" in the bundle).
func execIDOf(pidFile string) string {
	base := filepath.Base(pidFile)
	return strings.TrimSuffix(strings.TrimPrefix(base, ".exec-"), ".pid")
}

func (f *fakeRuntime) ReadyExec(id string, o process.ExecOpts) (process.Pending, error) {
	execID := execIDOf(o.PidFile)
	p := f.w.takePlan("ready/" + id + "/" + execID)
	if p.readyFail {
		return nil, errors.New("runc exec: injected: the runtime could not be started ahead")
	}
	pe := &fakePending{rt: f, container: id, exec: execID, opts: o, gone: p.pendingGone}
	f.w.mu.Lock()
	f.w.pendings = append(f.w.pendings, pe)
	f.w.mu.Unlock()
	return pe, nil
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, spec *specs.Process, o process.ExecOpts) error {
	return f.exec(id, execIDOf(o.PidFile), o)
}

func (f *fakeRuntime) exec(id, execID string, o process.ExecOpts) error {
	w := f.w
	p := w.takePlan("exec/" + id + "/" + execID)
	w.mu.Lock()
	c := w.containers[id]
	switch {
	case c == nil:
		w.mu.Unlock()
		return fmt.Errorf("container %s does not exist", id)
	case !c.init.alive || !c.started:
		w.mu.Unlock()
		return errors.New("runc exec failed: cannot exec in a stopped container")
	case p.fail:
		w.mu.Unlock()
		return errors.New("runc exec failed: injected by the test")
	}
	var n uint64
	if p.initDies {
		n = w.killLocked(c.init, p.status)
		if c.ownPidNS {
			// The kernel lets nothing into a pid namespace whose
			// init is gone.
			w.mu.Unlock()
			f.waitRouted(p, n)
			return errors.New("runc exec failed: fork into the container's pid namespace: cannot allocate memory")
		}
		if p.late && !w.waitKillAllLocked(id, w.killAlls[id]) {
			w.mu.Unlock()
			return errors.New("runc exec failed: the fake waited in vain for the kill --all after init's exit")
		}
		if w.containers[id] != c {
			w.mu.Unlock()
			return fmt.Errorf("runc exec failed: container %s does not exist", id)
		}
	}
	e := w.newProcLocked(id, execID)
	c.execs = append(c.execs, e)
	if p.exit {
		n = w.killLocked(e, p.status)
	}
	pid := e.pid
	w.mu.Unlock()
	f.waitRouted(p, n)
	return writePid(o.PidFile, pid)
}

// waitKillAllLocked waits, mu held, until container id had more than seen
// lethal kill --all calls, for at most 10 s; false if none came.
func (w *fakeWorld) waitKillAllLocked(id string, seen int) bool {
	deadline := time.Now().Add(10 * time.Second)
	timer := time.AfterFunc(10*time.Second, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	for w.killAlls[id] <= seen {
		if !time.Now().Before(deadline) {
			w.errs = append(w.errs, fmt.Sprintf("no kill --all of container %s after its init's exit", id))
			return false
		}
		w.cond.Wait()
	}
	return true
}

func (f *fakeRuntime) Kill(ctx context.Context, id string, sig int, all bool) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	if c == nil {
		return fmt.Errorf("container %s does not exist", id)
	}
	if !all {
		if !c.init.alive {
			return errors.New("runc kill failed: container not running")
		}
		if lethal(sig) {
			w.killLocked(c.init, 128+sig)
		}
		return nil
	}
	if !lethal(sig) {
		return nil
	}
	w.killAlls[id]++
	w.cond.Broadcast()
	w.killLocked(c.init, 128+sig)
	for _, e := range c.execs {
		w.killLocked(e, 128+sig)
	}
	return nil
}

func (f *fakeRuntime) Delete(ctx context.Context, id string, force bool) error {
	w := f.w
	if p := w.takePlan("delete/" + id); p.gate != nil {
		close(p.entered)
		<-p.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	if c == nil {
		return fmt.Errorf("container %s does not exist", id)
	}
	if c.init.alive && !force {
		return errors.New("runc delete failed: cannot delete container that is not stopped")
	}
	// runc kills what is left of a container without a pid namespace of
	// its own.
	w.killLocked(c.init, 128+int(unix.SIGKILL))
	for _, e := range c.execs {
		w.killLocked(e, 128+int(unix.SIGKILL))
	}
	delete(w.containers, id)
	return nil
}

func (f *fakeRuntime) Pause(ctx context.Context, id string) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	switch {
	case c == nil:
		return fmt.Errorf("container %s does not exist", id)
	case !c.init.alive || !c.started:
		return errors.New("runc pause failed: container not running")
	case c.paused:
		return errors.New("runc pause failed: container already paused")
	}
	c.paused = true
	return nil
}

func (f *fakeRuntime) Resume(ctx context.Context, id string) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	switch {
	case c == nil:
		return fmt.Errorf("container %s does not exist", id)
	case !c.paused:
		return errors.New("runc resume failed: container not paused")
	}
	c.paused = false
	return nil
}

func (f *fakeRuntime) Ps(ctx context.Context, id string) ([]int, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s does not exist", id)
	}
	var pids []int
	for _, p := range append([]*fakeProc{c.init}, c.execs...) {
		if p.alive {
			pids = append(pids, p.pid)
		}
	}
	return pids, nil
}

func (f *fakeRuntime) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	return nil
}

func (f *fakeRuntime) Checkpoint(ctx context.Context, id string, o process.CheckpointOpts) error {
	return errors.New("the fake runtime cannot checkpoint")
}

type pendingStateKind int

const (
	pendingWaitingState pendingStateKind = iota
	pendingRunState
	pendingAbortedState
)

// fakePending is a runtime readied ahead of an exec's Start.
type fakePending struct {
	rt              *fakeRuntime
	container, exec string
	opts            process.ExecOpts
	gone            bool
	state           pendingStateKind // guarded by the world's mu
}

func (p *fakePending) leave(to pendingStateKind) bool {
	w := p.rt.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state != pendingWaitingState {
		w.errs = append(w.errs, fmt.Sprintf("readied runtime of exec %s in %s used after it ended", p.exec, p.container))
		return false
	}
	p.state = to
	return true
}

func (p *fakePending) Run(spec *specs.Process) error {
	if !p.leave(pendingRunState) || p.gone {
		return process.ErrPendingGone
	}
	return p.rt.exec(p.container, p.exec, p.opts)
}

func (p *fakePending) Abort() { p.leave(pendingAbortedState) }

// event is one event the service published.
type event struct {
	topic string
	msg   interface{ ProtoName() string }
}

// recorder is the publisher: it keeps every event in order.
type recorder struct {
	// onPublish, if set, sees each event before it is recorded.
	onPublish func(topic string, msg interface{ ProtoName() string })

	// mu guards events; cond signals a new one.
	mu     sync.Mutex
	cond   *sync.Cond
	events []event
}

func newRecorder() *recorder {
	r := &recorder{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) Publish(topic string, msg interface{ ProtoName() string }) {
	if r.onPublish != nil {
		r.onPublish(topic, msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{topic: topic, msg: msg})
	r.cond.Broadcast()
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// waitFor waits until ok holds for the events so far, or the timeout
// passes; it reports whether ok held.
func (r *recorder) waitFor(timeout time.Duration, ok func([]event) bool) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !ok(r.events) {
		if !time.Now().Before(deadline) {
			return false
		}
		r.cond.Wait()
	}
	return true
}
