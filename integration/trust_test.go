package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Failure paths of the task API, each proven against the shim binary: every
// failed step undone, every event exactly once, in order.

// directShim starts a shim the way containerd does, for a first bundle
// running args, and returns it with a context for its requests.
func directShim(t *testing.T, c *harness.Containerd, id string, args []string) (*harness.DirectShim, *harness.DirectBundle, context.Context) {
	t.Helper()
	bin := filepath.Join(c.Flavour.BinDir, harness.ShimBinaryName(c.Runtime))
	if harness.IsOurs(c.Runtime) {
		bin = harness.ShimPath(t)
	}
	b := c.NewDirectBundle(t, id, args, map[string]string{harness.GroupAnnotation(c.Runtime): id})
	s := c.StartShimDirect(t, bin, b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(func() {
		// Whatever a test left: killed, deleted, and the shim told to go.
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		_ = s.Task.Kill(cctx, &taskapi.KillRequest{ID: id, Signal: 9, All: true})
		_, _ = s.Task.Delete(cctx, &taskapi.DeleteRequest{ID: id})
		_ = s.Task.Shutdown(cctx, &taskapi.ShutdownRequest{ID: id})
		cancel()
	})
	return s, b, ctx
}

// runcOptions is a Create's options naming the runtime binary.
func runcOptions(t *testing.T, binary string) *anypb.Any {
	t.Helper()
	v, err := proto.Marshal(&runcoptions.Options{BinaryName: binary})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: v}
}

func isNotFound(err error) bool { return err != nil && errdefs.IsNotFound(errgrpc.ToNative(err)) }

// processesWith lists the host processes whose command line contains marker.
func processesWith(marker string) []harness.Process {
	return harness.Processes(func(argv []string) bool { return strings.Contains(strings.Join(argv, " "), marker) })
}

// Two Deletes of one container at once: one deletes it and publishes
// /tasks/delete, the other finds it gone (NotFound). A Start racing a Delete
// of a created container: never both. Pause racing Resume: the shim's state
// is the runtime's, and the events end in that state.
func TestConcurrentLifecycleRequests(t *testing.T) {
	const rounds = 20
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		first := c.ID("race")
		s, b, ctx := directShim(t, c, first, []string{"true"})
		mk := func(id string, args []string) {
			t.Helper()
			nb := b
			if id != first {
				nb = c.NewDirectBundle(t, id, args, map[string]string{harness.GroupAnnotation(c.Runtime): first})
			}
			if _, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: nb.Path, Rootfs: nb.Rootfs}); err != nil {
				t.Fatalf("Create %s: %v", id, err)
			}
		}
		// The first container holds the pod while the others come and go.
		mk(first, nil)

		var deleted []string
		for i := range rounds {
			id := fmt.Sprintf("%s-del%d", first, i)
			mk(id, []string{"true"})
			if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
				t.Fatalf("Start %s: %v", id, err)
			}
			if _, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil {
				t.Fatalf("Wait %s: %v", id, err)
			}
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for j := range errs {
				wg.Go(func() { _, errs[j] = s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}) })
			}
			wg.Wait()
			ok, gone := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case isNotFound(err):
					gone++
				default:
					t.Errorf("Delete %s: %v", id, err)
				}
			}
			if ok != 1 || gone != 1 {
				t.Errorf("two Deletes of %s: %d succeeded, %d NotFound (%v); want one each", id, ok, gone, errs)
			}
			deleted = append(deleted, id)
		}

		for i := range rounds {
			id := fmt.Sprintf("%s-start%d", first, i)
			mk(id, []string{"sleep", "1000"})
			var startErr, delErr error
			var wg sync.WaitGroup
			wg.Go(func() { _, startErr = s.Task.Start(ctx, &taskapi.StartRequest{ID: id}) })
			wg.Go(func() { _, delErr = s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}) })
			wg.Wait()
			switch {
			case startErr == nil && delErr == nil:
				t.Errorf("Start and Delete of created %s both succeeded", id)
			case startErr == nil:
				// Started first: the Delete was refused; the container runs.
				st, err := s.Task.State(ctx, &taskapi.StateRequest{ID: id})
				if err != nil || st.Status != task.Status_RUNNING {
					t.Errorf("%s after Start won: %v (%v)", id, st, err)
				}
				_ = s.Task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9})
				if _, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil {
					t.Fatalf("Wait %s: %v", id, err)
				}
				if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
					t.Fatalf("Delete %s: %v", id, err)
				}
			case delErr == nil:
				if !isNotFound(startErr) {
					t.Errorf("Start of %s deleted meanwhile: %v, want NotFound", id, startErr)
				}
			default:
				t.Errorf("Start %s: %v; Delete: %v", id, startErr, delErr)
			}
			deleted = append(deleted, id)
		}

		pr := first + "-pause"
		mk(pr, []string{"sleep", "1000"})
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: pr}); err != nil {
			t.Fatalf("Start %s: %v", pr, err)
		}
		for range rounds {
			var wg sync.WaitGroup
			wg.Go(func() { _ = s.Task.Pause(ctx, &taskapi.PauseRequest{ID: pr}) })
			wg.Go(func() { _ = s.Task.Resume(ctx, &taskapi.ResumeRequest{ID: pr}) })
			wg.Wait()
			st, err := s.Task.State(ctx, &taskapi.StateRequest{ID: pr})
			if err != nil {
				t.Fatal(err)
			}
			frozen := c.RuncStatus(t, pr) == "paused"
			if frozen != (st.Status == task.Status_PAUSED) {
				t.Fatalf("after Pause racing Resume: the shim says %v, the runtime says frozen=%v", st.Status, frozen)
			}
			if frozen {
				if err := s.Task.Resume(ctx, &taskapi.ResumeRequest{ID: pr}); err != nil {
					t.Fatalf("Resume: %v", err)
				}
			}
		}
		// The shim publishes in order: once the exit of the pause container,
		// killed last, is in, every event of the rounds above is in too.
		_ = s.Task.Kill(ctx, &taskapi.KillRequest{ID: pr, Signal: 9})
		ev.MustWaitFor(t, 10*time.Second, "exit of "+pr, func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == pr
		})
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: pr}); err != nil {
			t.Errorf("Delete %s: %v", pr, err)
		}
		for _, id := range deleted {
			n := 0
			for _, e := range ev.Task(id) {
				if e.Topic == "/tasks/delete" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: %d /tasks/delete events, want 1: %v", id, n, harness.Topics(ev.Task(id)))
			}
		}
		var pauseTopics []string
		for _, e := range ev.Task(pr) {
			if e.Topic == "/tasks/paused" || e.Topic == "/tasks/resumed" {
				pauseTopics = append(pauseTopics, e.Topic)
			}
		}
		for i := 1; i < len(pauseTopics); i++ {
			if pauseTopics[i] == pauseTopics[i-1] {
				t.Errorf("pause events out of order: %v", pauseTopics)
				break
			}
		}
	})
}

// A Create that fails after the runtime created the container (here the
// runtime hands the shim something else than a terminal) leaves nothing: no
// runtime state, no process, no mount; the same id can be created again.
func TestCreateFailureUndone(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Skip("the fault is in the shim's handling of its own runtime binary option")
		}
		id := c.ID("undo")
		s, b, ctx := directShim(t, c, id, []string{"sh", "-c", "echo again"})
		faulty := harness.FaultyRunc(t, "bad-console")
		spec := b.Spec(t)
		spec.Process.Terminal = true
		b.SetSpec(t, spec)
		_, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs,
			Terminal: true, Options: runcOptions(t, faulty)})
		if err == nil {
			t.Fatal("Create with a runtime that sends no terminal succeeded")
		}
		t.Logf("Create failed as it should: %v", err)
		if harness.Exists(c.RuncStateDir(id)) {
			t.Errorf("the runtime's state of %s is left after the failed Create", id)
		}
		if m := harness.MountsUnder(b.Path); len(m) != 0 {
			t.Errorf("mounts left after the failed Create: %v", m)
		}
		spec.Process.Terminal = false
		b.SetSpec(t, spec)
		cr, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs, Stdout: b.Stdout, Stderr: b.Stderr})
		if err != nil {
			t.Fatalf("Create of %s again after the failure: %v", id, err)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if wr, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil || wr.ExitStatus != 0 {
			t.Fatalf("Wait: %v %v", wr, err)
		}
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if !b.WaitIO(10*time.Second) || b.Out.String() != "again\n" {
			t.Errorf("stdout %q", b.Out.String())
		}
		if cr.Pid == 0 {
			t.Errorf("Create answered pid 0")
		}
	})
}

// An exec whose Start fails after its process started (the runtime started
// it, then handed the shim no terminal): the process is killed, its exit is
// not published (containerd was told it did not start), and the count of
// running execs stays right: a later exec's exit still comes before init's.
func TestExecStartFailureAfterItsProcessStarted(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Skip("the fault is in the shim's handling of its own runtime binary option")
		}
		ev := c.Events(t)
		id := c.ID("execfail")
		s, b, ctx := directShim(t, c, id, []string{"sleep", "1000"})
		faulty := harness.FaultyRunc(t, "bad-console")
		if _, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs,
			Options: runcOptions(t, faulty)}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		marker := fmt.Sprintf("sleep %d", 200000+time.Now().UnixNano()%100000)
		bad := &specs.Process{Args: []string{"sh", "-c", `trap "" HUP; exec ` + marker}, Cwd: "/", Terminal: true,
			Env: []string{"PATH=/bin:/usr/bin"}}
		if err := s.Task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "bad", Terminal: true, Spec: processAny(t, bad)}); err != nil {
			t.Fatalf("Exec bad: %v", err)
		}
		_, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id, ExecID: "bad"})
		if err == nil {
			t.Fatal("Start of an exec whose terminal never came succeeded")
		}
		t.Logf("exec start failed as it should: %v", err)
		if !harness.WaitUntil(5*time.Second, func() bool { return len(processesWith(marker)) == 0 }) {
			t.Errorf("the process of the failed exec still runs: %v", processesWith(marker))
		}
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id, ExecID: "bad"}); err != nil {
			t.Errorf("Delete of the failed exec: %v", err)
		}

		good := &specs.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}}
		if err := s.Task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "good", Spec: processAny(t, good)}); err != nil {
			t.Fatalf("Exec good: %v", err)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id, ExecID: "good"}); err != nil {
			t.Fatalf("Start good: %v", err)
		}
		// Init dies, and its pid namespace with it: both exits come at once.
		if err := s.Task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9}); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		ev.MustWaitFor(t, 10*time.Second, "init's exit", func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == id && e.Str("id") == id
		})
		var exits []string
		for _, e := range ev.Task(id) {
			if e.Topic == "/tasks/exit" {
				exits = append(exits, e.Str("id"))
			}
		}
		if strings.Join(exits, ",") != "good,"+id {
			t.Errorf("exits %v, want the good exec's then init's, and none of the exec that did not start", exits)
		}
	})
}

func processAny(t *testing.T, p *specs.Process) *anypb.Any {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: data}
}

// An exec added while its container is deleted (its stdio slow to set up:
// a logger that takes its time to be ready) is refused, or deleted with the
// container: no /tasks/exec-added after /tasks/delete, no runtime left
// waiting for a spec.
func TestExecAddedWhileContainerIsDeleted(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("execdel")
		s, b, ctx := directShim(t, c, id, []string{"sleep", "1000"})
		logger := filepath.Join(c.Dir, "slow-logger")
		if err := os.WriteFile(logger, []byte("#!/bin/sh\nsleep 1\nexec 5>&-\ncat <&3 >/dev/null & cat <&4 >/dev/null\nwait\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		p := &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}}
		var execErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			execErr = s.Task.Exec(ctx, &taskapi.ExecProcessRequest{ID: id, ExecID: "late", Spec: processAny(t, p),
				Stdout: "binary://" + logger})
		})
		// Once the exec is under way (its logger has started and is not
		// ready yet), the container dies and is deleted.
		harness.Eventually(t, 10*time.Second, "the exec's logger starts", func() bool { return len(processesWith(logger)) > 0 })
		if err := s.Task.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: 9}); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		if _, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wg.Wait()
		t.Logf("Exec racing the delete: %v", execErr)
		ev.MustWaitFor(t, 10*time.Second, "delete of "+id, func(e harness.Event) bool {
			return e.Topic == "/tasks/delete" && e.Str("container_id") == id
		})
		if execErr == nil {
			ev.MustWaitFor(t, 10*time.Second, "exec-added of the exec that was added", func(e harness.Event) bool {
				return e.Topic == "/tasks/exec-added" && e.Str("container_id") == id
			})
		}
		seenDelete := false
		for _, e := range ev.Task(id) {
			if e.Topic == "/tasks/delete" {
				seenDelete = true
			}
			if e.Topic == "/tasks/exec-added" && seenDelete {
				t.Errorf("/tasks/exec-added after /tasks/delete: %v", harness.Topics(ev.Task(id)))
			}
		}
		// An Exec that succeeded was added before the delete (checked
		// above) and deleted with the container.
		if !harness.WaitUntil(3*time.Second, func() bool { return len(processesWith("/proc/self/fd/3 "+id)) == 0 }) {
			t.Errorf("a runtime exec is left waiting for its spec: %v", processesWith("/proc/self/fd/3 "+id))
		}
	})
}

// `start` must never answer with the address of a pod's shim that has
// decided to exit: the last container of a pod removed (Delete, then
// Shutdown, as containerd does) while the pod's next container starts
// (start, Create, Start) always ends with the new container running.
func TestStartRacingTheLastContainersRemoval(t *testing.T) {
	const rounds = 200
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Skip("the reference shim's own start/shutdown race is not ours to fix")
		}
		bin := harness.ShimPath(t)
		pod := c.ID("podrace")
		ann := map[string]string{harness.GroupAnnotation(c.Runtime): pod}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()

		newMember := func(i int) (*harness.DirectShim, string) {
			id := fmt.Sprintf("%s-%d", pod, i)
			b := c.NewDirectBundle(t, id, []string{"sleep", "1000"}, ann)
			s := c.StartShimDirect(t, bin, b)
			if _, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs}); err != nil {
				t.Fatalf("round %d: Create %s: %v", i, id, err)
			}
			if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
				t.Fatalf("round %d: Start %s: %v", i, id, err)
			}
			return s, id
		}
		cur, curID := newMember(0)
		for i := 1; i <= rounds; i++ {
			if err := cur.Task.Kill(ctx, &taskapi.KillRequest{ID: curID, Signal: 9}); err != nil {
				t.Fatalf("round %d: Kill: %v", i, err)
			}
			if _, err := cur.Task.Wait(ctx, &taskapi.WaitRequest{ID: curID}); err != nil {
				t.Fatalf("round %d: Wait: %v", i, err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if _, err := cur.Task.Delete(ctx, &taskapi.DeleteRequest{ID: curID}); err != nil {
					t.Errorf("round %d: Delete %s: %v", i, curID, err)
				}
				_ = cur.Task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: curID})
				cur.Client.Close() // containerd is done with that container
			})
			next, nextID := newMember(i)
			wg.Wait()
			st, err := next.Task.State(ctx, &taskapi.StateRequest{ID: nextID})
			if err != nil || st.Status != task.Status_RUNNING {
				t.Fatalf("round %d: the new container %s after the last one left: %v (%v)", i, nextID, st, err)
			}
			cur, curID = next, nextID
		}
		_ = cur.Task.Kill(ctx, &taskapi.KillRequest{ID: curID, Signal: 9})
		_, _ = cur.Task.Wait(ctx, &taskapi.WaitRequest{ID: curID})
		if _, err := cur.Task.Delete(ctx, &taskapi.DeleteRequest{ID: curID}); err != nil {
			t.Fatalf("Delete %s: %v", curID, err)
		}
		_ = cur.Task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: curID})
		cur.Client.Close()
		harness.Eventually(t, 10*time.Second, "the pod's shim exits", func() bool { return len(c.ShimProcesses(c.Runtime, "")) == 0 })
	})
}
