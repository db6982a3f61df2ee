package process

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// stubRuntime is a Runtime that runs nothing: create writes a pid file,
// every call is counted, and gate, when set, holds calls until closed.
type stubRuntime struct {
	calls atomic.Int32
	gate  chan struct{}
	fail  map[string]error
}

func (r *stubRuntime) call(op string) error {
	r.calls.Add(1)
	if r.gate != nil {
		<-r.gate
	}
	return r.fail[op]
}

func (r *stubRuntime) Create(ctx context.Context, id string, o CreateOpts) error {
	if err := r.call("create"); err != nil {
		return err
	}
	return os.WriteFile(o.PidFile, []byte(strconv.Itoa(1<<30)), 0o600)
}
func (r *stubRuntime) Start(context.Context, string) error { return r.call("start") }
func (r *stubRuntime) ReadyExec(string, ExecOpts) (Pending, error) {
	return nil, errors.New("not readied")
}
func (r *stubRuntime) Exec(context.Context, string, *specs.Process, ExecOpts) error {
	return r.call("exec")
}
func (r *stubRuntime) Kill(context.Context, string, int, bool) error { return r.call("kill") }
func (r *stubRuntime) Delete(context.Context, string, bool) error    { return r.call("delete") }
func (r *stubRuntime) Pause(context.Context, string) error           { return r.call("pause") }
func (r *stubRuntime) Resume(context.Context, string) error          { return r.call("resume") }
func (r *stubRuntime) Ps(context.Context, string) ([]int, error)     { return nil, r.call("ps") }
func (r *stubRuntime) Update(context.Context, string, *specs.LinuxResources) error {
	return r.call("update")
}
func (r *stubRuntime) Checkpoint(context.Context, string, CheckpointOpts) error {
	return r.call("checkpoint")
}

type noChildren struct{}

func (noChildren) Start(*exec.Cmd) error            { return errors.New("no children here") }
func (noChildren) Wait(*exec.Cmd) (int, error)      { return -1, errors.New("no children here") }
func (noChildren) Signal(int, syscall.Signal) error { return nil }

func newStubInit(t *testing.T, rt *stubRuntime) *Init {
	t.Helper()
	i := NewInit(InitConfig{ID: "c1", Bundle: t.TempDir(), Runtime: rt, Children: noChildren{}, ConsoleDir: t.TempDir()})
	if _, err := i.Create(t.Context(), Hooks{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return i
}

func TestInitStateMachine(t *testing.T) {
	rt := &stubRuntime{}
	i := newStubInit(t, rt)
	ctx := t.Context()
	if err := i.Resume(ctx, func() { t.Error("announced a resume that did not happen") }); !errors.Is(err, ErrWrongState) {
		t.Errorf("Resume of a created init: %v, want ErrWrongState", err)
	}
	if _, err := i.Start(ctx, Hooks{}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := i.Start(ctx, Hooks{}); !errors.Is(err, ErrWrongState) {
		t.Errorf("second Start: %v, want ErrWrongState", err)
	}
	var events []string
	if err := i.Pause(ctx, func() { events = append(events, "paused") }); err != nil || i.Status() != Paused {
		t.Fatalf("Pause: %v, status %s", err, i.Status())
	}
	if err := i.Resume(ctx, func() { events = append(events, "resumed") }); err != nil || i.Status() != Running {
		t.Fatalf("Resume: %v, status %s", err, i.Status())
	}
	if err := i.Delete(ctx, nil); !errors.Is(err, ErrWrongState) {
		t.Errorf("Delete of a running init: %v, want ErrWrongState", err)
	}
	if !i.SetExited(137, time.Now(), nil) || i.SetExited(1, time.Now(), nil) {
		t.Error("an exit is recorded exactly once")
	}
	if _, err := i.Start(ctx, Hooks{}); !errors.Is(err, ErrWrongState) {
		t.Errorf("Start of a stopped init: %v, want ErrWrongState", err)
	}
	if err := i.Kill(ctx, 9, false); !errors.Is(err, ErrExited) {
		t.Errorf("Kill of a stopped init: %v, want ErrExited", err)
	}
	if err := i.Delete(ctx, nil); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := i.Delete(ctx, nil); !errors.Is(err, ErrDeleted) {
		t.Errorf("second Delete: %v, want ErrDeleted", err)
	}
	if got := events; len(got) != 2 || got[0] != "paused" || got[1] != "resumed" {
		t.Errorf("announced %v", got)
	}
}

// Operations hold the process across the runtime call: of concurrent
// Deletes one runs teardown, the others find it deleted.
func TestInitDeleteOnce(t *testing.T) {
	rt := &stubRuntime{}
	i := newStubInit(t, rt)
	i.SetExited(0, time.Now(), nil)
	rt.gate = make(chan struct{})
	var teardowns atomic.Int32
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for n := range errs {
		wg.Go(func() {
			errs[n] = i.Delete(t.Context(), func() error { teardowns.Add(1); return nil })
		})
	}
	close(rt.gate)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrDeleted):
			t.Errorf("Delete: %v", err)
		}
	}
	if ok != 1 || teardowns.Load() != 1 {
		t.Errorf("%d Deletes succeeded, teardown ran %d times; want 1 and 1", ok, teardowns.Load())
	}
}

// A failed teardown leaves the init stopped, for Delete to be tried again.
func TestInitDeleteRetriedAfterTeardownFails(t *testing.T) {
	i := newStubInit(t, &stubRuntime{})
	i.SetExited(0, time.Now(), nil)
	boom := errors.New("unmount failed")
	if err := i.Delete(t.Context(), func() error { return boom }); !errors.Is(err, boom) || i.Status() != Stopped {
		t.Fatalf("Delete with a failing teardown: %v, status %s", err, i.Status())
	}
	if err := i.Delete(t.Context(), func() error { return nil }); err != nil || i.Status() != Deleted {
		t.Fatalf("Delete again: %v, status %s", err, i.Status())
	}
}

// A pause that fails leaves the container running; one racing an exit
// leaves it stopped.
func TestInitPauseFailsOrRacesAnExit(t *testing.T) {
	rt := &stubRuntime{fail: map[string]error{"pause": errors.New("freeze failed")}}
	i := newStubInit(t, rt)
	if _, err := i.Start(t.Context(), Hooks{}); err != nil {
		t.Fatal(err)
	}
	if err := i.Pause(t.Context(), func() { t.Error("announced a failed pause") }); err == nil || i.Status() != Running {
		t.Fatalf("failing Pause: %v, status %s", err, i.Status())
	}
	delete(rt.fail, "pause")
	rt.gate = make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- i.Pause(t.Context(), func() {}) }()
	// The pause is under way (held in the runtime): it shows as pausing.
	for deadline := time.Now().Add(10 * time.Second); i.Status() != Pausing; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status %s while the pause is under way, want pausing", i.Status())
		}
	}
	i.SetExited(137, time.Now(), nil)
	close(rt.gate)
	if err := <-done; err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if s := i.Status(); s != Stopped {
		t.Errorf("a pause that raced an exit left status %s, want stopped", s)
	}
}
