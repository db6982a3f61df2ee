package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// TestExitRouting drives the task service in-process, with a fake runtime
// and a fake reaper, through thousands of random schedules of interleaved
// requests and process exits, and checks what it published. A failing
// schedule prints its seed; -routing.seed (or ROUTING_SEED) runs that one
// schedule again.
var (
	routingSeed      = flag.String("routing.seed", "", "run only the schedule with this seed (also ROUTING_SEED)")
	routingSchedules = flag.Int("routing.schedules", 2000, "how many random schedules TestExitRouting runs")
)

const routingNamespace = "routing"

func TestExitRouting(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestExitRouting needs root: the pod's state dir is a bind mount (run the unit tests as root)")
	}
	first, count := uint64(time.Now().UnixNano()), *routingSchedules
	if s := cmpOr(*routingSeed, os.Getenv("ROUTING_SEED")); s != "" {
		seed, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatalf("routing seed %q: %v", s, err)
		}
		first, count = seed, 1
	}
	logs := captureLogs(t)
	root := tmpfsDir(t)
	before := runtime.NumGoroutine()

	for i := range count {
		seed := first + uint64(i)
		logs.reset()
		if failures, trace := runSchedule(root, seed); len(failures) > 0 {
			t.Fatalf("schedule %d of %d, seed %d failed:\n  %s\n\nrerun it: go test ./task -run 'TestExitRouting$' -routing.seed=%d (or ROUTING_SEED=%d)\n\nits requests:\n%s\nthe service's log:\n%s",
				i+1, count, seed, strings.Join(failures, "\n  "), seed, seed, trace, logs.tail(60))
		}
	}

	// Every service's exit router ended with its reaper's subscription;
	// nothing else may be left running.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling a count nothing signals
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left behind (%d before, %d after):\n%s", n-before, before, n, buf[:runtime.Stack(buf, true)])
	}
}

// tmpfsDir is a temporary directory on a tmpfs of its own, unmounted when
// the test ends: the pod's state is saved with fsync, which a busy disk
// makes slow, thousands of times.
func tmpfsDir(t *testing.T) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64m,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// logBuffer keeps the service's log of the schedule under way, for a
// failure's report.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func captureLogs(t *testing.T) *logBuffer {
	l := &logBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return l
}

// mContainer is what the schedule asked of a container and what it got.
type mContainer struct {
	id       string
	ownPidNS bool
	bundle   string

	// Guarded by the schedule's mu.
	createOK  bool
	createPid uint32
	startOK   int
	startPid  uint32
	deleteOK  int
	deleted   *taskapi.DeleteResponse
	execs     []*mExec
	wait      waitResult
}

type mExec struct {
	id string
	c  *mContainer

	// Guarded by the schedule's mu.
	addOK    bool
	startOK  int
	startPid uint32
	wait     waitResult
}

type waitResult struct {
	called, done bool
	err          error
	resp         *taskapi.WaitResponse
}

// schedule is one random run of the service.
type schedule struct {
	seed  uint64
	rng   *rand.Rand // the driver's: drawn from one goroutine only
	world *fakeWorld
	rec   *recorder
	svc   *Service
	dir   string
	ctx   context.Context

	// mu guards the model (containers, their execs and results) and trace.
	mu         sync.Mutex
	containers []*mContainer
	execs      []*mExec
	trace      []string

	async    sync.WaitGroup // requests sent without waiting
	inflight atomic.Int32
	waits    sync.WaitGroup // Wait requests
}

func (s *schedule) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

func runSchedule(root string, seed uint64) (failures []string, trace string) {
	dir := filepath.Join(root, fmt.Sprintf("s%d", seed))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return []string{err.Error()}, ""
	}
	defer os.RemoveAll(dir)

	w := newFakeWorld(seed)
	rec := newRecorder()
	key := fmt.Sprintf("pod%d", seed%1000000)
	svc, err := newFakeService(root, key, w, rec)
	if err != nil {
		return []string{err.Error()}, ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &schedule{seed: seed, rng: rand.New(rand.NewPCG(seed, 0)), world: w, rec: rec, svc: svc, dir: dir, ctx: ctx}

	steps := 10 + s.rng.IntN(50)
	for range steps {
		s.step()
	}
	s.async.Wait()
	failures = append(failures, s.settle()...)
	failures = append(failures, s.cleanup()...)
	// Every process is gone: every Wait answers. Those that do not in
	// time are cancelled, and fail the schedule.
	waited := make(chan struct{})
	go func() {
		s.waits.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		failures = append(failures, "Waits still unanswered 10 s after every container was deleted")
	}
	cancel()
	<-waited
	w.reaper.close()

	failures = append(failures, w.leftovers()...)
	failures = append(failures, w.errs...)
	if svc.Busy() {
		failures = append(failures, "the service still holds containers after every one was deleted")
	}
	podDir := filepath.Join(root, "pods", routingNamespace, key)
	if _, err := os.Stat(podDir); !errors.Is(err, fs.ErrNotExist) {
		failures = append(failures, fmt.Sprintf("pod state dir %s left behind (%v)", podDir, err))
		_ = os.RemoveAll(podDir)
	}
	failures = append(failures, s.check(rec.all())...)
	return failures, strings.Join(s.trace, "\n")
}

// newFakeService is a task service of the fake world w, publishing to rec,
// whose pod key is key and whose pods' state dirs are under root/pods.
func newFakeService(root, key string, w *fakeWorld, rec *recorder) (*Service, error) {
	w.reaper.world = w
	return New(context.Background(), Config{
		Namespace:  routingNamespace,
		ID:         "c0",
		Bundle:     filepath.Join(root, "c0"),
		PodKey:     key,
		PodRoot:    filepath.Join(root, "pods"),
		Reaper:     w.reaper,
		NewRuntime: w.newRuntime,
	}, rec, func(string) {})
}

// step sends one random request, or makes a process exit; some requests
// are sent without waiting for their answer, so that they overlap.
func (s *schedule) step() {
	op := s.pickOp()
	if op == nil { // a pause: the requests under way are answered first
		s.async.Wait()
		return
	}
	if s.inflight.Load() < 4 && s.rng.IntN(3) == 0 {
		s.async.Add(1)
		s.inflight.Add(1)
		go func() {
			defer s.async.Done()
			defer s.inflight.Add(-1)
			op()
		}()
		return
	}
	op()
}

// pickOp draws the next step; nil is a pause.
func (s *schedule) pickOp() func() {
	for {
		switch n := s.rng.IntN(100); {
		case n < 10:
			if op := s.opCreate(); op != nil {
				return op
			}
		case n < 20:
			if c := s.pickContainer(); c != nil {
				return s.opStart(c)
			}
		case n < 32:
			if c := s.pickContainer(); c != nil {
				return s.opExecAdd(c)
			}
		case n < 46:
			if e := s.pickExec(); e != nil {
				return s.opExecStart(e)
			}
		case n < 53:
			if c := s.pickContainer(); c != nil {
				return s.opKill(c)
			}
		case n < 59:
			if e := s.pickExec(); e != nil {
				return s.opKillExec(e)
			}
		case n < 66:
			if c := s.pickContainer(); c != nil {
				return s.opDelete(c)
			}
		case n < 71:
			if e := s.pickExec(); e != nil {
				return s.opDeleteExec(e)
			}
		case n < 75:
			if c := s.pickContainer(); c != nil {
				return s.opPause(c)
			}
		case n < 79:
			if c := s.pickContainer(); c != nil {
				return s.opResume(c)
			}
		case n < 95:
			return s.opExitNaturally()
		default:
			return nil
		}
	}
}

func (s *schedule) pickContainer() *mContainer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.containers) == 0 {
		return nil
	}
	return s.containers[s.rng.IntN(len(s.containers))]
}

func (s *schedule) pickExec() *mExec {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.execs) == 0 {
		return nil
	}
	return s.execs[s.rng.IntN(len(s.execs))]
}

// exitPlan draws whether a process exits during the call that starts it.
func (s *schedule) exitPlan(p *callPlan) {
	if s.rng.IntN(6) == 0 {
		p.exit, p.status, p.wait = true, s.status(), s.rng.IntN(2) == 0
	}
}

func (s *schedule) status() int {
	return []int{0, 1, 2, 3, 42, 128 + int(unix.SIGSEGV)}[s.rng.IntN(6)]
}

// faults draws the steps to fail during one request.
func (s *schedule) faults(candidates ...string) []string {
	var on []string
	for _, f := range candidates {
		if s.rng.IntN(12) == 0 {
			on = append(on, f)
		}
	}
	return on
}

func withFaults(steps []string, f func()) {
	if len(steps) > 0 {
		defer fault.Enable(steps...)()
	}
	f()
}

func (s *schedule) opCreate() func() {
	s.mu.Lock()
	if len(s.containers) >= 4 {
		s.mu.Unlock()
		return nil
	}
	c := &mContainer{id: fmt.Sprintf("c%d", len(s.containers)), ownPidNS: s.rng.IntN(2) == 0}
	c.bundle = filepath.Join(s.dir, c.id)
	s.containers = append(s.containers, c)
	s.mu.Unlock()

	var p callPlan
	p.fail = s.rng.IntN(10) == 0
	s.exitPlan(&p)
	faults := s.faults("process.pidfile", "process.attach")
	s.world.mu.Lock()
	s.world.ownPidNS[c.id] = c.ownPidNS
	s.world.mu.Unlock()
	s.world.plan("create/"+c.id, p)
	if err := writeBundle(c.bundle, c.ownPidNS); err != nil {
		return func() { s.logf("create %s: bundle: %v", c.id, err) }
	}
	return func() {
		var resp *taskapi.CreateTaskResponse
		var err error
		withFaults(faults, func() {
			resp, err = s.svc.Create(s.ctx, &taskapi.CreateTaskRequest{ID: c.id, Bundle: c.bundle})
		})
		s.logf("create %s ownPidNS=%v plan=%v faults=%v: %v", c.id, c.ownPidNS, p, faults, errText(err))
		if err != nil {
			return
		}
		s.mu.Lock()
		c.createOK, c.createPid = true, resp.Pid
		s.mu.Unlock()
		s.wait(&c.wait, c.id, "")
	}
}

func writeBundle(bundle string, ownPidNS bool) error {
	spec := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"sleep", "1"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}},
	}
	if ownPidNS {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	data, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600)
}

// wait sends a Wait for a process and keeps its answer.
func (s *schedule) wait(r *waitResult, id, execID string) {
	s.mu.Lock()
	r.called = true
	s.mu.Unlock()
	s.waits.Add(1)
	go func() {
		defer s.waits.Done()
		resp, err := s.svc.Wait(s.ctx, &taskapi.WaitRequest{ID: id, ExecID: execID})
		s.mu.Lock()
		r.done, r.err, r.resp = true, err, resp
		s.mu.Unlock()
	}()
}

func (s *schedule) opStart(c *mContainer) func() {
	var p callPlan
	p.fail = s.rng.IntN(10) == 0
	s.exitPlan(&p)
	s.world.plan("start/"+c.id, p)
	return func() {
		resp, err := s.svc.Start(s.ctx, &taskapi.StartRequest{ID: c.id})
		s.logf("start %s plan=%v: %v", c.id, p, errText(err))
		if err == nil {
			s.mu.Lock()
			c.startOK++
			c.startPid = resp.Pid
			s.mu.Unlock()
		}
	}
}

func (s *schedule) opExecAdd(c *mContainer) func() {
	s.mu.Lock()
	e := &mExec{id: fmt.Sprintf("e%d", len(s.execs)), c: c}
	s.execs = append(s.execs, e)
	c.execs = append(c.execs, e)
	s.mu.Unlock()
	p := callPlan{readyFail: s.rng.IntN(5) == 0, pendingGone: s.rng.IntN(6) == 0}
	s.world.plan("ready/"+c.id+"/"+e.id, p)
	faults := s.faults("stdio.setup")
	spec, _ := json.Marshal(&specs.Process{Args: []string{"true"}, Cwd: "/"})
	return func() {
		var err error
		withFaults(faults, func() {
			_, err = s.svc.Exec(s.ctx, &taskapi.ExecProcessRequest{
				ID: c.id, ExecID: e.id,
				Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec},
			})
		})
		s.logf("exec add %s/%s plan=%v faults=%v: %v", c.id, e.id, p, faults, errText(err))
		if err != nil {
			return
		}
		s.mu.Lock()
		e.addOK = true
		s.mu.Unlock()
		s.wait(&e.wait, c.id, e.id)
	}
}

func (s *schedule) opExecStart(e *mExec) func() {
	var p callPlan
	p.fail = s.rng.IntN(10) == 0
	s.exitPlan(&p)
	if s.rng.IntN(10) == 0 {
		p.initDies, p.status, p.late = true, s.status(), s.rng.IntN(2) == 0
	}
	s.world.plan("exec/"+e.c.id+"/"+e.id, p)
	faults := s.faults("process.exec-started", "process.exec-started", "process.attach")
	return func() {
		var resp *taskapi.StartResponse
		var err error
		withFaults(faults, func() {
			resp, err = s.svc.Start(s.ctx, &taskapi.StartRequest{ID: e.c.id, ExecID: e.id})
		})
		s.logf("exec start %s/%s plan=%v faults=%v: %v", e.c.id, e.id, p, faults, errText(err))
		if err == nil {
			s.mu.Lock()
			e.startOK++
			e.startPid = resp.Pid
			s.mu.Unlock()
		}
	}
}

func (s *schedule) signal() uint32 {
	return []uint32{uint32(unix.SIGKILL), uint32(unix.SIGTERM), uint32(unix.SIGWINCH)}[s.rng.IntN(3)]
}

func (s *schedule) opKill(c *mContainer) func() {
	sig, all := s.signal(), s.rng.IntN(2) == 0
	return func() {
		_, err := s.svc.Kill(s.ctx, &taskapi.KillRequest{ID: c.id, Signal: sig, All: all})
		s.logf("kill %s signal %d all=%v: %v", c.id, sig, all, errText(err))
	}
}

func (s *schedule) opKillExec(e *mExec) func() {
	sig := s.signal()
	return func() {
		_, err := s.svc.Kill(s.ctx, &taskapi.KillRequest{ID: e.c.id, ExecID: e.id, Signal: sig})
		s.logf("kill %s/%s signal %d: %v", e.c.id, e.id, sig, errText(err))
	}
}

func (s *schedule) opDelete(c *mContainer) func() {
	return func() {
		resp, err := s.svc.Delete(s.ctx, &taskapi.DeleteRequest{ID: c.id})
		s.logf("delete %s: %v", c.id, errText(err))
		if err == nil {
			s.mu.Lock()
			c.deleteOK++
			c.deleted = resp
			s.mu.Unlock()
		}
	}
}

func (s *schedule) opDeleteExec(e *mExec) func() {
	return func() {
		_, err := s.svc.Delete(s.ctx, &taskapi.DeleteRequest{ID: e.c.id, ExecID: e.id})
		s.logf("delete %s/%s: %v", e.c.id, e.id, errText(err))
	}
}

func (s *schedule) opPause(c *mContainer) func() {
	return func() {
		_, err := s.svc.Pause(s.ctx, &taskapi.PauseRequest{ID: c.id})
		s.logf("pause %s: %v", c.id, errText(err))
	}
}

func (s *schedule) opResume(c *mContainer) func() {
	return func() {
		_, err := s.svc.Resume(s.ctx, &taskapi.ResumeRequest{ID: c.id})
		s.logf("resume %s: %v", c.id, errText(err))
	}
}

func (s *schedule) opExitNaturally() func() {
	pids := s.world.livePids()
	if len(pids) == 0 {
		return func() {}
	}
	pid, status := pids[s.rng.IntN(len(pids))], s.status()
	return func() {
		p, _ := s.world.proc(pid)
		ok := s.world.exitNaturally(pid, status)
		s.logf("process %d (%s %q) exits %d: %v", pid, p.container, p.exec, status, ok)
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// settle waits, without sending anything, for the exit of every process
// that has ended to be published: nothing may keep an exit back once the
// requests are answered.
func (s *schedule) settle() []string {
	var failures []string
	s.mu.Lock()
	type want struct {
		container, id string
		pid           int
	}
	var wants []want
	for _, c := range s.containers {
		if c.createOK && c.deleteOK == 0 {
			if p, ok := s.world.proc(int(c.createPid)); ok && !p.alive {
				wants = append(wants, want{c.id, c.id, p.pid})
			}
		}
	}
	for _, e := range s.execs {
		if e.startOK > 0 {
			if p, ok := s.world.proc(int(e.startPid)); ok && !p.alive {
				wants = append(wants, want{e.c.id, e.id, p.pid})
			}
		}
	}
	s.mu.Unlock()
	for _, w := range wants {
		if !s.rec.waitFor(10*time.Second, func(evs []event) bool { return exitIndex(evs, w.container, w.id) >= 0 }) {
			failures = append(failures, fmt.Sprintf("process %d (%s of container %s) ended, and its exit was never published", w.pid, w.id, w.container))
		}
	}
	return failures
}

func exitIndex(evs []event, container, id string) int {
	for i, ev := range evs {
		if m, ok := ev.msg.(*eventstypes.TaskExit); ok && m.ContainerID == container && m.ID == id {
			return i
		}
	}
	return -1
}

// cleanup kills and deletes every container left, as containerd would.
func (s *schedule) cleanup() []string {
	var failures []string
	s.mu.Lock()
	var left []*mContainer
	for _, c := range s.containers {
		if c.createOK && c.deleteOK == 0 {
			left = append(left, c)
		}
	}
	s.mu.Unlock()
	for _, c := range left {
		_, err := s.svc.Kill(s.ctx, &taskapi.KillRequest{ID: c.id, Signal: uint32(unix.SIGKILL), All: true})
		s.logf("cleanup: kill %s all: %v", c.id, errText(err))
		if !s.rec.waitFor(10*time.Second, func(evs []event) bool { return exitIndex(evs, c.id, c.id) >= 0 }) {
			failures = append(failures, fmt.Sprintf("container %s killed, and its exit was never published", c.id))
			continue
		}
		resp, err := s.svc.Delete(s.ctx, &taskapi.DeleteRequest{ID: c.id})
		s.logf("cleanup: delete %s: %v", c.id, errText(err))
		if err != nil {
			failures = append(failures, fmt.Sprintf("delete of stopped container %s: %v", c.id, err))
			continue
		}
		s.mu.Lock()
		c.deleteOK++
		c.deleted = resp
		s.mu.Unlock()
	}
	return failures
}

// check checks what the service published against what was asked and what
// the fake processes did.
func (s *schedule) check(evs []event) []string {
	var failures []string
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	s.mu.Lock()
	defer s.mu.Unlock()

	type execEvents struct{ added, started, exit []int }
	type containerEvents struct {
		create, start, exit, del, pause []int
		all                             []int
		execs                           map[string]*execEvents
	}
	byID := map[string]*containerEvents{}
	of := func(id string) *containerEvents {
		ce := byID[id]
		if ce == nil {
			ce = &containerEvents{execs: map[string]*execEvents{}}
			byID[id] = ce
		}
		return ce
	}
	ofExec := func(ce *containerEvents, id string) *execEvents {
		ee := ce.execs[id]
		if ee == nil {
			ee = &execEvents{}
			ce.execs[id] = ee
		}
		return ee
	}
	for i, ev := range evs {
		var cid string
		switch m := ev.msg.(type) {
		case *eventstypes.TaskCreate:
			cid = m.ContainerID
			of(cid).create = append(of(cid).create, i)
		case *eventstypes.TaskStart:
			cid = m.ContainerID
			of(cid).start = append(of(cid).start, i)
		case *eventstypes.TaskExecAdded:
			cid = m.ContainerID
			ofExec(of(cid), m.ExecID).added = append(ofExec(of(cid), m.ExecID).added, i)
		case *eventstypes.TaskExecStarted:
			cid = m.ContainerID
			ofExec(of(cid), m.ExecID).started = append(ofExec(of(cid), m.ExecID).started, i)
		case *eventstypes.TaskExit:
			cid = m.ContainerID
			if m.ID == cid {
				of(cid).exit = append(of(cid).exit, i)
			} else {
				ofExec(of(cid), m.ID).exit = append(ofExec(of(cid), m.ID).exit, i)
			}
			p, ok := s.world.proc(int(m.Pid))
			switch {
			case !ok:
				fail("event %d: exit of pid %d, which no process ever had", i, m.Pid)
			case p.container != cid || (p.exec != "" && p.exec != m.ID) || (p.exec == "" && m.ID != cid):
				fail("event %d: exit of %s/%s carries pid %d, which is container %s's %q", i, cid, m.ID, m.Pid, p.container, p.exec)
			case p.alive:
				fail("event %d: exit of %s/%s published while its process %d is alive", i, cid, m.ID, m.Pid)
			case int(m.ExitStatus) != p.status:
				fail("event %d: exit of %s/%s has status %d; its process ended with %d", i, cid, m.ID, m.ExitStatus, p.status)
			}
		case *eventstypes.TaskDelete:
			cid = m.ContainerID
			of(cid).del = append(of(cid).del, i)
		case *eventstypes.TaskPaused:
			cid = m.ContainerID
			of(cid).pause = append(of(cid).pause, i)
		case *eventstypes.TaskResumed:
			cid = m.ContainerID
			of(cid).pause = append(of(cid).pause, i)
		default:
			fail("event %d: unexpected %s %v", i, ev.topic, ev.msg)
			continue
		}
		of(cid).all = append(of(cid).all, i)
	}

	known := map[string]bool{}
	for _, c := range s.containers {
		known[c.id] = true
		ce := of(c.id)
		if !c.createOK {
			if len(ce.all) > 0 {
				fail("container %s was never created, yet events %v were published for it", c.id, ce.all)
			}
			continue
		}
		once := func(what string, idx []int) int {
			if len(idx) != 1 {
				fail("container %s: %d %s events (%v), want 1", c.id, len(idx), what, idx)
				if len(idx) == 0 {
					return -1
				}
			}
			return idx[0]
		}
		create, exit, del := once("create", ce.create), once("exit", ce.exit), once("delete", ce.del)
		if c.deleteOK != 1 {
			fail("container %s: %d Deletes succeeded, want 1", c.id, c.deleteOK)
		}
		start := -1
		switch {
		case c.startOK > 1:
			fail("container %s started %d times", c.id, c.startOK)
		case c.startOK == 1:
			start = once("start", ce.start)
			if start >= 0 {
				if p := evs[start].msg.(*eventstypes.TaskStart).Pid; p != c.createPid || p != c.startPid {
					fail("container %s: start event pid %d, Start answered %d, Create %d", c.id, p, c.startPid, c.createPid)
				}
			}
		case len(ce.start) > 0:
			fail("container %s: start events %v, but no Start succeeded", c.id, ce.start)
		}
		order := []int{create}
		if start >= 0 {
			order = append(order, start)
		}
		order = append(order, exit, del)
		if !slices.IsSorted(order) {
			fail("container %s: create, start, exit, delete published in the order of events %v", c.id, order)
		}
		if del >= 0 {
			if last := ce.all[len(ce.all)-1]; last != del {
				fail("container %s: event %d (%s) published after its delete (event %d)", c.id, last, evs[last].topic, del)
			}
		}
		for i := 1; i < len(ce.pause); i++ {
			if evs[ce.pause[i]].topic == evs[ce.pause[i-1]].topic {
				fail("container %s: %s twice in a row (events %d, %d)", c.id, evs[ce.pause[i]].topic, ce.pause[i-1], ce.pause[i])
			}
		}
		if len(ce.pause) > 0 && (ce.pause[0] < start || start < 0) {
			fail("container %s: %s (event %d) before its start", c.id, evs[ce.pause[0]].topic, ce.pause[0])
		}
		var initExit *eventstypes.TaskExit
		if exit >= 0 {
			initExit = evs[exit].msg.(*eventstypes.TaskExit)
			if create >= 0 && initExit.Pid != evs[create].msg.(*eventstypes.TaskCreate).Pid {
				fail("container %s: exit pid %d, create pid %d", c.id, initExit.Pid, evs[create].msg.(*eventstypes.TaskCreate).Pid)
			}
			if d := c.deleted; d != nil && (d.ExitStatus != initExit.ExitStatus || d.Pid != initExit.Pid) {
				fail("container %s: Delete answered pid %d status %d, its exit was pid %d status %d", c.id, d.Pid, d.ExitStatus, initExit.Pid, initExit.ExitStatus)
			}
		}
		failures = append(failures, checkWait(c.id, c.wait, initExit, true)...)

		for _, e := range c.execs {
			ee := ofExec(ce, e.id)
			name := c.id + "/" + e.id
			if e.addOK != (len(ee.added) == 1) || len(ee.added) > 1 {
				fail("exec %s: Exec succeeded: %v; exec-added events %v", name, e.addOK, ee.added)
			}
			started := e.startOK > 0
			if e.startOK > 1 || started != (len(ee.started) == 1) || len(ee.started) > 1 {
				fail("exec %s: %d Starts succeeded; exec-started events %v", name, e.startOK, ee.started)
			}
			if started != (len(ee.exit) == 1) || len(ee.exit) > 1 {
				fail("exec %s: started: %v; exit events %v (want one exactly for a started exec)", name, started, ee.exit)
			}
			var execExit *eventstypes.TaskExit
			if len(ee.added) > 0 && len(ee.started) > 0 && len(ee.exit) > 0 {
				execExit = evs[ee.exit[0]].msg.(*eventstypes.TaskExit)
				order := []int{create, ee.added[0], ee.started[0], ee.exit[0], exit}
				if start >= 0 {
					order = []int{create, start, ee.added[0], ee.started[0], ee.exit[0], exit}
				}
				if !slices.IsSorted(order) {
					fail("exec %s: container create%s, exec-added, exec-started, exec exit, init exit published in the order of events %v",
						name, map[bool]string{true: ", start", false: ""}[start >= 0], order)
				}
				if p := evs[ee.started[0]].msg.(*eventstypes.TaskExecStarted).Pid; p != execExit.Pid || p != e.startPid {
					fail("exec %s: exec-started pid %d, Start answered %d, exit pid %d", name, p, e.startPid, execExit.Pid)
				}
			}
			failures = append(failures, checkWait(name, e.wait, execExit, started)...)
		}
	}
	for id, ce := range byID {
		if !known[id] {
			fail("events %v published for container %s, which nobody asked for", ce.all, id)
		}
	}
	return failures
}

// checkWait checks a Wait's answer against the exit published: a Wait
// returns once the process has exited, with the status published. A Wait
// may also end with NotFound (the process was deleted before it was asked)
// or, for an exec that never started, when the exec was deleted.
func checkWait(name string, r waitResult, exit *eventstypes.TaskExit, mustExit bool) []string {
	switch {
	case !r.called:
		return nil
	case !r.done:
		return []string{fmt.Sprintf("Wait for %s never answered", name)}
	case r.err != nil && errdefs.IsNotFound(errgrpc.ToNative(r.err)):
		return nil
	case r.err != nil:
		// Every process is gone before the Waits are cancelled.
		return []string{fmt.Sprintf("Wait for %s: %v", name, r.err)}
	case exit == nil:
		if mustExit {
			return []string{fmt.Sprintf("Wait for %s answered status %d, and no exit was published", name, r.resp.ExitStatus)}
		}
		return nil
	case r.resp.ExitStatus != exit.ExitStatus || !r.resp.ExitedAt.AsTime().Equal(exit.ExitedAt.AsTime()):
		return []string{fmt.Sprintf("Wait for %s answered status %d at %v; the exit published was %d at %v",
			name, r.resp.ExitStatus, r.resp.ExitedAt.AsTime(), exit.ExitStatus, exit.ExitedAt.AsTime())}
	}
	return nil
}
