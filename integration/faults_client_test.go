package integration

// The rows of TestFaults driven through containerd's Go client.

import (
	"context"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// faultPod is a pod whose first container (the keeper) runs on while the
// rows make its second fail.
type faultPod struct {
	c      *harness.Containerd
	cl     *client.Client
	ctx    context.Context
	ev     *harness.Events
	ann    map[string]string
	keeper *faultContainer
	shim   int // the pod's shim
}

func newFaultPod(t *testing.T, c *harness.Containerd) *faultPod {
	t.Helper()
	cl, ctx := newClient(t, c)
	p := &faultPod{c: c, cl: cl, ctx: ctx, ev: c.Events(t)}
	key := c.ID("pod")
	p.ann = map[string]string{harness.GroupAnnotation(c.Runtime): key}
	p.keeper = p.container(t, c.Runtime, "", c.ID("keeper"))
	if err := p.keeper.newTask(ctx, c); err != nil {
		t.Fatalf("create the pod's first container: %v", err)
	}
	p.keeper.start(t, ctx)
	shims := c.ShimProcesses(c.Runtime, p.keeper.id)
	if len(shims) != 1 {
		t.Fatalf("shim of the pod: %v", shims)
	}
	p.shim = shims[0].PID
	t.Cleanup(func() { p.keeper.remove(t, ctx) })
	return p
}

// checkKeeper checks that the pod's first container still runs.
func (p *faultPod) checkKeeper(t *testing.T) {
	t.Helper()
	st, err := p.keeper.task.Status(p.ctx)
	if err != nil || st.Status != client.Running {
		t.Errorf("the pod's first container %s: %v (%v), want running", p.keeper.id, st.Status, err)
	}
}

// faultContainer is a container made through the Go client.
type faultContainer struct {
	id      string
	marker  string
	ctr     client.Container
	cgroups string // its cgroupsPath
	task    client.Task
	exitC   <-chan client.ExitStatus
	out     *syncBuffer // the current task's stdout

	exec    client.Process // the exec of an exec row
	execOut *syncBuffer
	execMk  string // the exec's marker
}

// container makes a container (no task) of runtime in the pod, running
// `echo started` and then `sleep MARKER`; binary is its BinaryName ("" for
// runc).
func (p *faultPod) container(t *testing.T, runtime, binary, id string) *faultContainer {
	t.Helper()
	return newFaultContainer(t, p.ctx, p.cl, p.c, runtime, binary, id, p.ann)
}

func newFaultContainer(t *testing.T, ctx context.Context, cl *client.Client, c *harness.Containerd, runtime, binary, id string, ann map[string]string) *faultContainer {
	t.Helper()
	x := &faultContainer{id: id, marker: newMarker()}
	img, err := cl.GetImage(ctx, c.Image)
	if err != nil {
		t.Fatalf("GetImage: %v", err)
	}
	var opts any
	if binary != "" {
		opts = &runcoptions.Options{BinaryName: binary}
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "echo started; exec sleep "+x.marker)}
	if len(ann) > 0 {
		specOpts = append(specOpts, oci.WithAnnotations(ann))
	}
	x.ctr, err = cl.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id+"-snapshot", img),
		client.WithRuntime(runtime, opts), client.WithNewSpec(specOpts...))
	if err != nil {
		t.Fatalf("NewContainer %s: %v", id, err)
	}
	spec, err := x.ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	x.cgroups = spec.Linux.CgroupsPath
	return x
}

func (x *faultContainer) newTask(ctx context.Context, c *harness.Containerd) error {
	x.out = &syncBuffer{}
	task, err := x.ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, x.out, x.out), cio.WithFIFODir(c.FifoDir)))
	if err != nil {
		return err
	}
	x.task = task
	x.exitC, err = task.Wait(ctx)
	return err
}

func (x *faultContainer) start(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := x.task.Start(ctx); err != nil {
		t.Fatalf("Start %s: %v", x.id, err)
	}
	harness.Eventually(t, 10*time.Second, x.id+" prints started", func() bool { return x.out.String() == "started\n" })
}

// finish kills the task, waits for its exit and deletes it.
func (x *faultContainer) finish(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := x.task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("Kill %s: %v", x.id, err)
	}
	x.waitExit(t)
	x.deleteTask(t, ctx)
}

func (x *faultContainer) waitExit(t *testing.T) {
	t.Helper()
	select {
	case st := <-x.exitC:
		if code, _, _ := st.Result(); code != 137 {
			t.Errorf("%s exited %d, want 137 (killed)", x.id, code)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20 s", x.id)
	}
}

func (x *faultContainer) deleteTask(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := x.task.Delete(ctx); err != nil {
		t.Fatalf("Delete %s: %v", x.id, err)
	}
	x.task = nil
}

// remove deletes whatever is left of the container, for the test's end.
func (x *faultContainer) remove(t *testing.T, ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if x.task != nil {
		if _, err := x.task.Delete(dctx, client.WithProcessKill); err != nil {
			t.Logf("cleanup: delete task %s: %v", x.id, err)
		}
	}
	if err := x.ctr.Delete(dctx, client.WithSnapshotCleanup); err != nil {
		t.Logf("cleanup: delete container %s: %v", x.id, err)
	}
}

// execStart adds exec "e" to the running container, running `echo exec`
// then `sleep MARKER`, and returns its Start's error.
func (x *faultContainer) execStart(t *testing.T, ctx context.Context, c *harness.Containerd) error {
	t.Helper()
	spec, err := x.ctr.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps := *spec.Process
	x.execMk = newMarker()
	ps.Args = []string{"sh", "-c", "echo exec; exec sleep " + x.execMk}
	x.execOut = &syncBuffer{}
	x.exec, err = x.task.Exec(ctx, "e", &ps, cio.NewCreator(cio.WithStreams(nil, x.execOut, x.execOut), cio.WithFIFODir(c.FifoDir)))
	if err != nil {
		t.Fatalf("Exec in %s: %v", x.id, err)
	}
	return x.exec.Start(ctx)
}

// status checks the task's status, as the shim and the runtime see it.
func (x *faultContainer) status(t *testing.T, ctx context.Context, c *harness.Containerd, want client.ProcessStatus, runc string) {
	t.Helper()
	st, err := x.task.Status(ctx)
	if err != nil || st.Status != want {
		t.Errorf("%s after the failure: %v (%v), want %v", x.id, st.Status, err, want)
	}
	if got := c.RuncStatus(t, x.id); got != runc {
		t.Errorf("%s after the failure: the runtime says %q, want %q", x.id, got, runc)
	}
}

var updateResources = func() *specs.LinuxResources {
	shares := uint64(512)
	return &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}}
}()

// reach does what comes before op in a container's life (which must work)
// and then op, and returns op's error.
func reach(t *testing.T, ctx context.Context, c *harness.Containerd, x *faultContainer, op string) error {
	t.Helper()
	err := x.newTask(ctx, c)
	if op == "create" {
		return err
	}
	if err != nil {
		t.Fatalf("create %s: %v", x.id, err)
	}
	if op == "start" {
		return x.task.Start(ctx)
	}
	x.start(t, ctx)
	switch op {
	case "exec":
		return x.execStart(t, ctx, c)
	case "kill":
		return x.task.Kill(ctx, syscall.SIGKILL)
	case "delete":
		if err := x.task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("Kill %s: %v", x.id, err)
		}
		x.waitExit(t)
		_, err := x.task.Delete(ctx)
		return err
	case "pause":
		return x.task.Pause(ctx)
	case "resume":
		if err := x.task.Pause(ctx); err != nil {
			t.Fatalf("Pause %s: %v", x.id, err)
		}
		return x.task.Resume(ctx)
	case "update":
		return x.task.Update(ctx, client.WithResources(updateResources))
	case "ps":
		_, err := x.task.Pids(ctx)
		return err
	}
	t.Fatalf("no such request %q", op)
	return nil
}

// checkAfter checks the container right after op failed: a failed request
// changed nothing, and a failed create or exec left nothing of itself.
func checkAfter(t *testing.T, ctx context.Context, c *harness.Containerd, x *faultContainer, op string) {
	t.Helper()
	switch op {
	case "create":
		checkContainerGone(t, c, x.id, c.Bundle(x.id), x.cgroups, x.marker)
	case "start":
		x.status(t, ctx, c, client.Created, "created")
	case "exec":
		x.status(t, ctx, c, client.Running, "running")
		if !harness.WaitUntil(10*time.Second, func() bool { return len(processesWith("sleep "+x.execMk)) == 0 }) {
			t.Errorf("the failed exec's process runs: %v", processesWith("sleep "+x.execMk))
		}
		if !harness.WaitUntil(10*time.Second, func() bool { return len(runtimeProcesses(x.id)) == 0 }) {
			t.Errorf("a runtime works on %s after its exec failed: %v", x.id, runtimeProcesses(x.id))
		}
	case "kill", "pause", "update", "ps":
		x.status(t, ctx, c, client.Running, "running")
	case "delete":
		x.status(t, ctx, c, client.Stopped, "stopped")
	case "resume":
		x.status(t, ctx, c, client.Paused, "paused")
	}
}

// redo does op again, now that the fault is gone, and ends the container's
// task: killed, waited for and deleted.
func redo(t *testing.T, ctx context.Context, c *harness.Containerd, x *faultContainer, op string) {
	t.Helper()
	switch op {
	case "create":
		if err := x.newTask(ctx, c); err != nil {
			t.Fatalf("create %s again: %v", x.id, err)
		}
		x.start(t, ctx)
	case "start":
		// containerd's client closed the task's stdio when Start failed:
		// the container runs with its output going nowhere.
		if err := x.task.Start(ctx); err != nil {
			t.Fatalf("Start %s again: %v", x.id, err)
		}
		harness.Eventually(t, 10*time.Second, x.id+" runs", func() bool { return len(processesWith("sleep "+x.marker)) > 0 })
	case "exec":
		if _, err := x.exec.Delete(ctx); err != nil {
			t.Fatalf("delete the failed exec: %v", err)
		}
		if err := x.execStart(t, ctx, c); err != nil {
			t.Fatalf("exec again: %v", err)
		}
		harness.Eventually(t, 10*time.Second, "the exec prints exec", func() bool { return x.execOut.String() == "exec\n" })
		exitC, err := x.exec.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.exec.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the exec: %v", err)
		}
		<-exitC
		if _, err := x.exec.Delete(ctx); err != nil {
			t.Fatalf("delete the exec: %v", err)
		}
	case "kill":
		if err := x.task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("Kill %s again: %v", x.id, err)
		}
		x.waitExit(t)
		x.deleteTask(t, ctx)
		return
	case "delete":
		x.deleteTask(t, ctx)
		return
	case "pause":
		if err := x.task.Pause(ctx); err != nil {
			t.Fatalf("Pause %s again: %v", x.id, err)
		}
		if err := x.task.Resume(ctx); err != nil {
			t.Fatalf("Resume %s: %v", x.id, err)
		}
	case "resume":
		if err := x.task.Resume(ctx); err != nil {
			t.Fatalf("Resume %s again: %v", x.id, err)
		}
	case "update":
		if err := x.task.Update(ctx, client.WithResources(updateResources)); err != nil {
			t.Fatalf("Update %s again: %v", x.id, err)
		}
	case "ps":
		pids, err := x.task.Pids(ctx)
		if err != nil || len(pids) == 0 {
			t.Fatalf("Pids of %s again: %v %v", x.id, pids, err)
		}
	}
	x.finish(t, ctx)
}

// clientRow runs a row through the Go client in pod p, with the container's
// runtime binary (a faultyrunc, or "" for runc) healed by heal.
func clientRow(t *testing.T, p *faultPod, row faultRow, binary string, heal func(), kind string, words ...string) {
	c, ctx := p.c, p.ctx
	id := c.ID("x")
	x := p.container(t, c.Runtime, binary, id)
	t.Cleanup(func() { x.remove(t, ctx) })
	before := takeShimState(t, c, p.shim)

	err := reach(t, ctx, c, x, row.op)
	switch {
	case row.runtimeFault(): // the runtime's own words name what failed
	case row.op == "exec":
		words = append(words, "exec e")
	default:
		words = append(words, id)
	}
	checkFaultError(t, err, kind, words...)
	checkAfter(t, ctx, c, x, row.op)
	if row.op == "create" {
		before.check(t, c, "after the failed create")
	}
	p.checkKeeper(t)

	// The fault is gone: the request works, and nothing is left once the
	// container is deleted.
	heal()
	redo(t, ctx, c, x, row.op)
	checkContainerGone(t, c, id, c.Bundle(id), x.cgroups, x.marker)
	before.check(t, c, "after the retry and delete")

	// The same id is created and runs again (a failed create's retry did).
	if row.op == "create" {
		checkLives(t, p.ev, id, 1, row.op)
		p.checkKeeper(t)
		return
	}
	if err := x.newTask(ctx, c); err != nil {
		t.Fatalf("create %s once more: %v", id, err)
	}
	x.start(t, ctx)
	x.finish(t, ctx)
	checkContainerGone(t, c, id, c.Bundle(id), x.cgroups, x.marker)
	before.check(t, c, "after the container ran again")
	checkLives(t, p.ev, id, 2, row.op)
	p.checkKeeper(t)
}

// runtimeFaultRow: the container's runtime fails the row's command. The
// error is compared with the reference shim's for the same failure.
func runtimeFaultRow(t *testing.T, p *faultPod, row faultRow) {
	words := row.command() + " failed: injected by faultyrunc"
	if ref := referenceKind(t, p.c, row); ref != row.kind() {
		t.Errorf("containerd-shim-runc-v2 answers this failure with %s, not %s", ref, row.kind())
	}
	faulty := harness.NewFaultyRunc(t, "fail-"+row.command())
	clientRow(t, p, row, faulty.Path, func() { faulty.Heal(t) }, row.kind(), words)
}

// referenceKind is the kind of error containerd-shim-runc-v2 returns when
// the runtime fails the row's command.
func referenceKind(t *testing.T, c *harness.Containerd, row faultRow) string {
	t.Helper()
	cl, ctx := newClient(t, c)
	faulty := harness.NewFaultyRunc(t, "fail-"+row.command())
	x := newFaultContainer(t, ctx, cl, c, harness.RuntimeRunc, faulty.Path, c.ID("ref"), nil)
	defer func() {
		faulty.Heal(t)
		x.remove(t, ctx)
	}()
	err := reach(t, ctx, c, x, row.op)
	if err == nil {
		t.Fatalf("the reference shim did not fail %s", row.op)
	}
	t.Logf("the reference shim's error: %s: %v", kindOf(err), err)
	return kindOf(err)
}

// shimFaultRow: a step inside the shim fails (the daemon's environment names
// it) for the pod's second container, or for an exec in it.
func shimFaultRow(t *testing.T, c *harness.Containerd, row faultRow) {
	p := newFaultPod(t, c)
	clientRow(t, p, row, "", func() {}, row.kind(), row.step()+": fault injected for testing")
}
