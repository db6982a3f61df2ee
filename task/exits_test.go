package task

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
)

// A Start waiting for a Delete of the same created container must not hold
// back the init's exit: the Delete waits for that exit before it publishes.
// (Found by TestExitRouting: the Delete waited 2 s, then published the exit
// with status 137 instead of the process's own.)
func TestStartBehindDeleteHoldsNoExit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the pod's state dir is a bind mount (run the unit tests as root)")
	}
	captureLogs(t)
	root := tmpfsDir(t)
	w, rec := newFakeWorld(1), newRecorder()
	svc, err := newFakeService(root, "pod", w, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.reaper.close)
	ctx := context.Background()
	bundle := filepath.Join(root, "c1")
	if err := writeBundle(bundle, true); err != nil {
		t.Fatal(err)
	}
	created, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}

	entered, gate := make(chan struct{}), make(chan struct{})
	w.plan("delete/c1", callPlan{entered: entered, gate: gate})
	deleted := make(chan *taskapi.DeleteResponse, 1)
	go func() {
		resp, err := svc.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
		if err != nil {
			t.Errorf("delete: %v", err)
		}
		deleted <- resp
	}()
	<-entered // the Delete holds the init, in the runtime's delete
	started := make(chan error, 1)
	go func() {
		_, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1"})
		started <- err
	}()
	// The Start is under way (in the exit router), waiting for the Delete.
	for deadline := time.Now().Add(10 * time.Second); ; {
		svc.exits.mu.Lock()
		pending := svc.exits.pending
		svc.exits.mu.Unlock()
		if pending > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Start never reached the exit router")
		}
		runtime.Gosched()
	}
	// The init exits on its own, and the router has it, before the
	// runtime's delete returns.
	w.mu.Lock()
	n := w.killLocked(w.procs[int(created.Pid)], 3)
	w.mu.Unlock()
	w.reaper.waitDelivered(n)
	close(gate)

	resp := <-deleted
	if resp == nil || resp.ExitStatus != 3 {
		t.Fatalf("Delete answered %v, want exit status 3 (the init's own)", resp)
	}
	if err := <-started; !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("Start of a deleted container: %v, want NotFound", err)
	}
	var topics []string
	for _, ev := range rec.all() {
		topics = append(topics, ev.topic)
		if exit, ok := ev.msg.(*eventstypes.TaskExit); ok && exit.ExitStatus != 3 {
			t.Errorf("exit published with status %d, want 3", exit.ExitStatus)
		}
	}
	if want := []string{TopicCreate, TopicExit, TopicDelete}; !slices.Equal(topics, want) {
		t.Fatalf("events %v, want %v", topics, want)
	}
}

// An exit is published before anyone waiting for it (Wait, a Delete's
// teardown) is woken: else a Delete can publish /tasks/delete before the
// exit it waited for. (Found by TestExitRouting: "event 4 (/tasks/exit)
// published after its delete (event 3)".)
func TestExitPublishedBeforeWaitersWake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the pod's state dir is a bind mount (run the unit tests as root)")
	}
	captureLogs(t)
	root := tmpfsDir(t)
	w, rec := newFakeWorld(1), newRecorder()
	svc, err := newFakeService(root, "pod", w, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.reaper.close)
	ctx := context.Background()
	bundle := filepath.Join(root, "c1")
	if err := writeBundle(bundle, true); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	spec := []byte(`{"args":["true"],"cwd":"/"}`)
	if _, err := svc.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{TypeUrl: "p", Value: spec}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	c, e, err := svc.getProcess(ctx, "c1", "e1")
	if err != nil {
		t.Fatal(err)
	}
	exits := make(chan string, 2)
	rec.onPublish = func(topic string, msg interface{ ProtoName() string }) {
		exit, ok := msg.(*eventstypes.TaskExit)
		if !ok {
			return
		}
		exited := c.init.Exited()
		if exit.ID == "e1" {
			exited = e.Exited()
		}
		select {
		case <-exited:
			t.Errorf("exit of %s published after its waiters were woken", exit.ID)
		default:
		}
		exits <- exit.ID
	}
	if _, err := svc.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	<-exits
	<-exits
	if _, err := svc.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
}

// newFakeServiceT is a service of a fresh fake world, for a test.
func newFakeServiceT(t *testing.T) (*Service, *fakeWorld, *recorder, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the pod's state dir is a bind mount (run the unit tests as root)")
	}
	captureLogs(t)
	root := tmpfsDir(t)
	w, rec := newFakeWorld(1), newRecorder()
	svc, err := newFakeService(root, "pod", w, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.reaper.close)
	return svc, w, rec, root
}

// An exec of a container without a pid namespace of its own whose process
// joins the container just after its init exited, too late for the kill
// of what was left, is killed too: else the init's exit, which waits for
// the execs' exits, is never published.
func TestExecJoiningAfterInitExitIsKilled(t *testing.T) {
	svc, w, rec, root := newFakeServiceT(t)
	ctx := context.Background()
	bundle := filepath.Join(root, "c1")
	if err := writeBundle(bundle, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	spec := []byte(`{"args":["true"],"cwd":"/"}`)
	if _, err := svc.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{TypeUrl: "p", Value: spec}}); err != nil {
		t.Fatal(err)
	}
	w.plan("exec/c1/e1", callPlan{initDies: true, late: true, status: 7})
	if _, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatalf("exec start: %v", err)
	}
	published := rec.waitFor(10*time.Second, func(evs []event) bool { return exitIndex(evs, "c1", "c1") >= 0 })
	evs := rec.all()
	var topics []string
	for _, ev := range evs {
		topics = append(topics, ev.topic)
	}
	if !published {
		t.Fatalf("the init's exit was never published (events %v; live processes %v)", topics, w.livePids())
	}
	if e, i := exitIndex(evs, "c1", "e1"), exitIndex(evs, "c1", "c1"); e < 0 || e > i {
		t.Fatalf("events %v: the exec's exit must come before the init's", topics)
	}
}

// /tasks/exec-added is published before the container can be closed for its
// delete: else a Delete that discards the exec, just added, publishes
// /tasks/delete first. (Found by TestExitRouting: "event 12
// (/tasks/exec-added) published after its delete (event 11)".)
func TestExecAddedPublishedBeforeTheContainerCloses(t *testing.T) {
	svc, _, rec, root := newFakeServiceT(t)
	ctx := context.Background()
	bundle := filepath.Join(root, "c1")
	if err := writeBundle(bundle, true); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, &taskapi.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	c, err := svc.get(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	rec.onPublish = func(topic string, msg interface{ ProtoName() string }) {
		if topic != TopicExecAdded {
			return
		}
		seen = true
		// The container's delete closes it under execMu: while the event
		// is published, nothing may close it.
		if c.execMu.TryLock() {
			c.execMu.Unlock()
			t.Error("exec-added published while the container could be closed for its delete")
		}
	}
	spec := []byte(`{"args":["true"],"cwd":"/"}`)
	if _, err := svc.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{TypeUrl: "p", Value: spec}}); err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Fatal("no exec-added published")
	}
	if _, err := svc.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	if !rec.waitFor(10*time.Second, func(evs []event) bool { return exitIndex(evs, "c1", "c1") >= 0 }) {
		t.Fatal("no exit published")
	}
	if _, err := svc.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
}
