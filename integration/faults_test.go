package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Fault injection at every step (issue 9): each row of faultRows makes one
// step fail, a runtime command through faultyrunc or a step inside the shim
// through CONTAINERD_SHIM_POD_V2_FAULTS (see package fault), drives the
// request that hits it, and checks the error's kind and words, that nothing
// of what the request did is left (mounts under the bundle, the pod's pins,
// the runtime's state, the container's cgroup and processes, the shim's file
// descriptors), that the shim keeps serving the pod's other containers, and
// that the same id works again once the fault is gone. docs/FAULTS.md shows
// the same table (TestFaultTableDocumented keeps the two equal).

// faultEnv is the shim's fault variable (fault.Env in the shim's module).
const faultEnv = "CONTAINERD_SHIM_POD_V2_FAULTS"

// How a row reaches the shim.
const (
	// viaClient: containerd's Go client, as containerd is the caller, in a pod
	// whose first container runs on (the keeper). A runtime fault is given
	// as the failing container's BinaryName; a shim fault is in a containerd
	// started with it in its environment, one daemon per row.
	viaClient = "client"
	// viaDirect: a shim started by the test as containerd starts it, with
	// the fault in its environment, the failing container its pod's first.
	viaDirect = "direct"
)

// Pods a direct row's first container asks for.
const (
	podNetns   = "netns"   // a new network namespace (containerd's default spec)
	podUserns  = "userns"  // a new user namespace with mappings and a network namespace in it
	podAdopted = "adopted" // the network namespace of another process, by path
	podMounts2 = "mounts2" // a new network namespace, and a rootfs of two mounts
)

type faultRow struct {
	fault string // a runtime command ("runc create") or a shim fault step ("task.mount@2")
	op    string // the request that hits it: create, start, exec, kill, delete, pause, resume, update, ps
	via   string // viaClient or viaDirect
	pod   string // direct rows: the pod (podNetns...)
}

// runtimeFault says whether the row's fault is the runtime's.
func (r faultRow) runtimeFault() bool { return strings.HasPrefix(r.fault, "runc ") }

// command is the failing runtime command of a runtime row.
func (r faultRow) command() string { return strings.TrimPrefix(r.fault, "runc ") }

// step is the shim fault step of a shim row, without its count.
func (r faultRow) step() string { s, _, _ := strings.Cut(r.fault, "@"); return s }

func (r faultRow) name() string {
	n := strings.ReplaceAll(r.fault, " ", "-") + "_" + r.op
	if r.pod != "" {
		n += "_" + r.pod
	}
	return n
}

var faultRows = []faultRow{
	// The runtime fails at each command it runs for a container: the
	// failing container is the pod's second, the first runs on.
	{fault: "runc create", op: "create", via: viaClient},
	{fault: "runc start", op: "start", via: viaClient},
	{fault: "runc exec", op: "exec", via: viaClient},
	{fault: "runc kill", op: "kill", via: viaClient},
	{fault: "runc delete", op: "delete", via: viaClient},
	{fault: "runc pause", op: "pause", via: viaClient},
	{fault: "runc resume", op: "resume", via: viaClient},
	{fault: "runc update", op: "update", via: viaClient},
	{fault: "runc ps", op: "ps", via: viaClient},

	// A step inside the shim fails for the pod's second container (the
	// first container's own steps are the first checks of each step).
	{fault: "pod.join@2", op: "create", via: viaClient},
	{fault: "task.spec@2", op: "create", via: viaClient},
	{fault: "task.mount@2", op: "create", via: viaClient},
	{fault: "task.record@2", op: "create", via: viaClient},
	{fault: "stdio.setup@2", op: "create", via: viaClient},
	{fault: "process.attach@2", op: "create", via: viaClient},
	{fault: "process.pidfile@2", op: "create", via: viaClient},
	// ... or for an exec in it (the two containers' creates came first).
	{fault: "stdio.setup@3", op: "exec", via: viaClient},
	{fault: "process.attach@3", op: "exec", via: viaClient},
	{fault: "process.exec-started@1", op: "exec", via: viaClient},

	// The pod's first container, whose Create makes the pod's namespaces.
	{fault: "pod.create@1", op: "create", via: viaDirect, pod: podNetns},
	{fault: "pod.loopback@1", op: "create", via: viaDirect, pod: podNetns},
	{fault: "pod.pin@1", op: "create", via: viaDirect, pod: podNetns},
	{fault: "pod.join@1", op: "create", via: viaDirect, pod: podNetns},
	{fault: "pod.create@1", op: "create", via: viaDirect, pod: podUserns},
	{fault: "pod.pin@1", op: "create", via: viaDirect, pod: podUserns},
	{fault: "pod.pin@2", op: "create", via: viaDirect, pod: podUserns},
	{fault: "pod.loopback@1", op: "create", via: viaDirect, pod: podUserns},
	{fault: "pod.adopt@1", op: "create", via: viaDirect, pod: podAdopted},
	{fault: "task.mount@2", op: "create", via: viaDirect, pod: podMounts2},
}

func TestFaults(t *testing.T) {
	harness.CheckRoot(t)
	if !harness.IsOurs(harness.Runtime()) {
		t.Skip("the faults are injected into our shim; the reference runtime's kinds are compared within")
	}
	for _, f := range harness.Flavours(t) {
		t.Run(f.Name, func(t *testing.T) {
			// Runtime faults, direct shims and the publisher share one
			// daemon: their faults are per container or per shim.
			t.Run("shared", func(t *testing.T) {
				c := harness.Start(t, f, harness.Options{})
				p := newFaultPod(t, c)
				for _, row := range faultRows {
					if row.via == viaClient && row.runtimeFault() {
						t.Run(row.name(), func(t *testing.T) { runtimeFaultRow(t, p, row) })
					}
				}
				for _, row := range faultRows {
					if row.via == viaDirect {
						t.Run(row.name(), func(t *testing.T) { directFaultRow(t, c, row) })
					}
				}
				t.Run("shim.publish@1-3_retried", func(t *testing.T) { publishRetried(t, c) })
				t.Run("shim.publish_at-exit", func(t *testing.T) { publishLostAtExit(t, c) })
			})
			// A shim fault reached through containerd: containerd's
			// environment is the shim's, so a daemon per fault.
			for _, row := range faultRows {
				if row.via == viaClient && !row.runtimeFault() {
					t.Run(row.name(), func(t *testing.T) {
						c := harness.Start(t, f, harness.Options{Env: []string{faultEnv + "=" + row.fault}})
						shimFaultRow(t, c, row)
					})
				}
			}
		})
	}
}

// kindOf names an error's errdefs kind.
func kindOf(err error) string {
	switch {
	case err == nil:
		return "none"
	case errdefs.IsNotFound(err):
		return "NotFound"
	case errdefs.IsAlreadyExists(err):
		return "AlreadyExists"
	case errdefs.IsInvalidArgument(err):
		return "InvalidArgument"
	case errdefs.IsFailedPrecondition(err):
		return "FailedPrecondition"
	case errdefs.IsNotImplemented(err):
		return "NotImplemented"
	case errdefs.IsUnavailable(err):
		return "Unavailable"
	case errdefs.IsDeadlineExceeded(err):
		return "DeadlineExceeded"
	case errdefs.IsCanceled(err):
		return "Canceled"
	case errdefs.IsInternal(err):
		return "Internal"
	case errdefs.IsUnknown(err):
		return "Unknown"
	}
	return fmt.Sprintf("other (%T)", err)
}

// checkFaultError checks a failed request's error: the kind, and words that
// name what failed.
func checkFaultError(t *testing.T, err error, kind string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the request succeeded; want it to fail (%s)", strings.Join(words, ", "))
	}
	t.Logf("failed as it should: %v", err)
	if got := kindOf(err); got != kind {
		t.Errorf("error kind %s, want %s: %v", got, kind, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err.Error(), w)
		}
	}
}

var markers atomic.Int64

// newMarker is a number no other process on the host has on its command
// line: `sleep MARKER` finds a container's processes.
func newMarker() string {
	return fmt.Sprintf("%d", 7000000+time.Now().UnixNano()%1000000*10+markers.Add(1)%10)
}

// shimState is what a failure must leave as it was: the shim's open file
// descriptors, and the pins of every pod of the daemon's namespace.
type shimState struct {
	pid  int
	fds  []string
	pins []string
}

func podPins(c *harness.Containerd) []string {
	pins := harness.MountsUnder(filepath.Join(harness.PodStateRoot, c.Namespace))
	slices.Sort(pins)
	return pins
}

func takeShimState(t *testing.T, c *harness.Containerd, pid int) shimState {
	t.Helper()
	fds, err := harness.FDs(pid)
	if err != nil {
		t.Fatalf("fds of the shim %d: %v", pid, err)
	}
	return shimState{pid: pid, fds: fds, pins: podPins(c)}
}

// check waits (bounded) until the shim holds no more descriptors than
// before (a connection containerd drops closes on the shim's side a moment
// later) and checks that the pods' pins are the same.
func (s shimState) check(t *testing.T, c *harness.Containerd, when string) {
	t.Helper()
	var now []string
	if !harness.WaitUntil(10*time.Second, func() bool {
		fds, err := harness.FDs(s.pid)
		if err != nil {
			return false
		}
		now = fds
		return len(now) <= len(s.fds)
	}) {
		t.Errorf("%s: the shim holds %d descriptors, %d before; new ones: %v", when, len(now), len(s.fds), newFDs(s.fds, now))
	}
	if pins := podPins(c); !slices.Equal(pins, s.pins) {
		t.Errorf("%s: pod pins %v, before %v", when, pins, s.pins)
	}
}

// newFDs lists the descriptors in now that are not in before (by number and target).
func newFDs(before, now []string) []string {
	var out []string
	for _, f := range now {
		if !slices.Contains(before, f) {
			out = append(out, f)
		}
	}
	return out
}

// runtimeProcesses lists the runtime processes (runc, faultyrunc) working on
// container id.
func runtimeProcesses(id string) []harness.Process {
	return harness.Processes(func(argv []string) bool {
		base := filepath.Base(argv[0])
		return (strings.HasPrefix(base, "runc") || strings.HasPrefix(base, "faultyrunc")) && argv[len(argv)-1] == id
	})
}

// checkContainerGone fails t unless nothing of container id is left within
// 10 s: no mount under its bundle, no runtime state, no cgroup, no process
// with its marker, no runtime process working on it.
func checkContainerGone(t *testing.T, c *harness.Containerd, id, bundle, cgroupsPath, marker string) {
	t.Helper()
	var left []string
	if harness.WaitUntil(10*time.Second, func() bool {
		left = nil
		for _, m := range harness.MountsUnder(bundle) {
			left = append(left, "mount "+m)
		}
		if st := c.RuncStateDir(id); harness.Exists(st) {
			left = append(left, "runtime state "+st)
		}
		if cgroupsPath != "" {
			for _, d := range harness.CgroupDirs(cgroupsPath) {
				left = append(left, "cgroup "+d)
			}
		}
		for _, p := range processesWith("sleep " + marker) {
			left = append(left, fmt.Sprintf("process %d %q", p.PID, p.Cmdline))
		}
		for _, p := range runtimeProcesses(id) {
			left = append(left, fmt.Sprintf("runtime process %d %q", p.PID, p.Cmdline))
		}
		return len(left) == 0
	}) {
		return
	}
	t.Errorf("container %s left behind:\n  %s", id, strings.Join(left, "\n  "))
}

// --- Rows through containerd's Go client ---------------------------------

// faultPod is a pod whose first container (the keeper) runs on while the
// rows make its second fail.
type faultPod struct {
	c      *harness.Containerd
	cl     *client.Client
	ctx    context.Context
	ann    map[string]string
	keeper *faultContainer
	shim   int // the pod's shim
}

func newFaultPod(t *testing.T, c *harness.Containerd) *faultPod {
	t.Helper()
	cl, ctx := newClient(t, c)
	p := &faultPod{c: c, cl: cl, ctx: ctx}
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

	// The same id is created and runs again.
	if err := x.newTask(ctx, c); err != nil {
		t.Fatalf("create %s once more: %v", id, err)
	}
	x.start(t, ctx)
	x.finish(t, ctx)
	checkContainerGone(t, c, id, c.Bundle(id), x.cgroups, x.marker)
	before.check(t, c, "after the container ran again")
	p.checkKeeper(t)
}

// runtimeFaultRow: the container's runtime fails the row's command. The
// error is compared with the reference shim's for the same failure.
func runtimeFaultRow(t *testing.T, p *faultPod, row faultRow) {
	words := row.command() + " failed: injected by faultyrunc"
	refKind := referenceKind(t, p.c, row)
	faulty := harness.NewFaultyRunc(t, "fail-"+row.command())
	clientRow(t, p, row, faulty.Path, func() { faulty.Heal(t) }, refKind, words)
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
	clientRow(t, p, row, "", func() {}, "Unknown", row.step()+": fault injected for testing")
}

// --- Rows through a shim started directly ---------------------------------

// faultShim is a shim the test started, and its first bundle.
type faultShim struct {
	s   *harness.DirectShim
	b   *harness.DirectBundle
	ctx context.Context
	pid int
}

func startFaultShim(t *testing.T, c *harness.Containerd, id string, args []string, faults string, edit func(*specs.Spec)) *faultShim {
	t.Helper()
	b := c.NewDirectBundle(t, id, args, map[string]string{harness.PodAnnotation: id})
	if edit != nil {
		spec := b.Spec(t)
		edit(spec)
		b.SetSpec(t, spec)
	}
	s := c.StartShimDirectEnv(t, harness.ShimPath(t), b, []string{faultEnv + "=" + faults})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		_ = s.Task.Kill(cctx, &taskapi.KillRequest{ID: id, Signal: 9, All: true})
		_, _ = s.Task.Delete(cctx, &taskapi.DeleteRequest{ID: id})
		_ = s.Task.Shutdown(cctx, &taskapi.ShutdownRequest{ID: id})
		cancel()
	})
	// Serving: its descriptors are those of a shim at work.
	if _, err := s.Task.Connect(ctx, &taskapi.ConnectRequest{ID: id}); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	shims := c.ShimProcesses(c.Runtime, id)
	if len(shims) != 1 {
		t.Fatalf("shim started for %s: %v", id, shims)
	}
	return &faultShim{s: s, b: b, ctx: ctx, pid: shims[0].PID}
}

// output is a fifo the test reads, for one task's stdout.
func output(t *testing.T, c *harness.Containerd, name string) (string, *harness.Buffer, func(time.Duration) bool) {
	t.Helper()
	path := filepath.Join(c.FifoDir, name)
	buf := &harness.Buffer{}
	f, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatalf("fifo %s: %v", path, err)
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(buf, f)
		f.Close()
		close(done)
	}()
	t.Cleanup(func() { f.Close() })
	return path, buf, func(d time.Duration) bool {
		select {
		case <-done:
			return true
		case <-time.After(d):
			return false
		}
	}
}

// run creates, starts and deletes container id in the shim, and checks
// that it printed what it should.
func (fs *faultShim) run(t *testing.T, c *harness.Containerd, req *taskapi.CreateTaskRequest, want string) {
	t.Helper()
	ctx := fs.ctx
	stdout, buf, closed := output(t, c, req.ID+"-"+newMarker())
	r := &taskapi.CreateTaskRequest{ID: req.ID, Bundle: req.Bundle, Rootfs: req.Rootfs, Stdout: stdout}
	if _, err := fs.s.Task.Create(ctx, r); err != nil {
		t.Fatalf("Create %s: %v", req.ID, err)
	}
	if _, err := fs.s.Task.Start(ctx, &taskapi.StartRequest{ID: req.ID}); err != nil {
		t.Fatalf("Start %s: %v", req.ID, err)
	}
	if wr, err := fs.s.Task.Wait(ctx, &taskapi.WaitRequest{ID: req.ID}); err != nil || wr.ExitStatus != 0 {
		t.Fatalf("Wait %s: %v %v", req.ID, wr, err)
	}
	if _, err := fs.s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: req.ID}); err != nil {
		t.Fatalf("Delete %s: %v", req.ID, err)
	}
	if !closed(10*time.Second) || buf.String() != want {
		t.Errorf("%s printed %q, want %q", req.ID, buf.String(), want)
	}
}

// directFaultRow: a step of the pod's first container's Create fails in a
// shim started directly.
func directFaultRow(t *testing.T, c *harness.Containerd, row faultRow) {
	id := c.ID("first")
	marker := newMarker()
	args := []string{"sh", "-c", "echo started; exit 0; sleep " + marker}
	var edit func(*specs.Spec)
	switch row.pod {
	case podUserns:
		// The container's root, an unmapped user, must reach its bundle.
		if err := os.Chmod(c.Dir, 0o711); err != nil {
			t.Fatal(err)
		}
		edit = func(spec *specs.Spec) {
			spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
			spec.Linux.UIDMappings, spec.Linux.GIDMappings = m, m
		}
	case podAdopted:
		holder := exec.Command("unshare", "--net", "sleep", newMarker())
		if err := holder.Start(); err != nil {
			t.Fatalf("a process with a network namespace of its own: %v", err)
		}
		t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
		netns := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
		harness.Eventually(t, 5*time.Second, "unshare made its network namespace", func() bool {
			a, _ := os.Readlink(netns)
			b, _ := os.Readlink("/proc/self/ns/net")
			return a != "" && a != b
		})
		edit = func(spec *specs.Spec) {
			for i, ns := range spec.Linux.Namespaces {
				if ns.Type == specs.NetworkNamespace {
					spec.Linux.Namespaces[i].Path = netns
				}
			}
		}
	}
	fs := startFaultShim(t, c, id, args, row.fault, edit)
	if row.pod == podUserns {
		// The container's root, an unmapped user, opens its rootfs.
		if err := os.Chmod(fs.b.Rootfs[0].Source, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := fs.b.Spec(t)
	rootfs := fs.b.Rootfs
	if row.pod == podMounts2 {
		rootfs = []*types.Mount{fs.b.Rootfs[0], fs.b.Rootfs[0]}
	}
	req := &taskapi.CreateTaskRequest{ID: id, Bundle: fs.b.Path, Rootfs: rootfs}
	before := takeShimState(t, c, fs.pid)

	_, err := fs.s.Task.Create(fs.ctx, req)
	checkFaultError(t, errgrpc.ToNative(err), "Unknown", row.step()+": fault injected for testing", id)
	checkContainerGone(t, c, id, fs.b.Path, spec.Linux.CgroupsPath, marker)
	if dir := filepath.Join(harness.PodStateRoot, c.Namespace, id); harness.Exists(dir) {
		t.Errorf("the pod's state dir %s is left", dir)
	}
	before.check(t, c, "after the failed create")

	// The fault struck once: the same shim creates the same id, which runs;
	// and runs again, holding no more than after its first run (the first
	// events opened the shim's connection to containerd).
	fs.run(t, c, req, "started\n")
	checkContainerGone(t, c, id, fs.b.Path, spec.Linux.CgroupsPath, marker)
	if pins := podPins(c); !slices.Equal(pins, before.pins) {
		t.Errorf("after the retry and delete: pod pins %v, before %v", pins, before.pins)
	}
	ran := takeShimState(t, c, fs.pid)
	fs.b.SetSpec(t, spec) // containerd writes each task's config.json anew
	fs.run(t, c, req, "started\n")
	checkContainerGone(t, c, id, fs.b.Path, spec.Linux.CgroupsPath, marker)
	ran.check(t, c, "after the container ran again")
}

// An event containerd cannot take is retried, in order, and delivered once.
func publishRetried(t *testing.T, c *harness.Containerd) {
	ev := c.Events(t)
	id := c.ID("pub")
	fs := startFaultShim(t, c, id, []string{"echo", "published"}, "shim.publish@1,shim.publish@2,shim.publish@3", nil)
	fs.run(t, c, &taskapi.CreateTaskRequest{ID: id, Bundle: fs.b.Path, Rootfs: fs.b.Rootfs}, "published\n")
	ev.MustWaitFor(t, 20*time.Second, "delete of "+id, func(e harness.Event) bool {
		return e.Topic == "/tasks/delete" && e.Str("container_id") == id
	})
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := harness.Topics(ev.Task(id)); !slices.Equal(got, want) {
		t.Errorf("events of %s: %v, want %v once each, in order", id, got, want)
	}
	for _, line := range []string{"event not delivered yet, retrying", "event delivered after retries"} {
		if !strings.Contains(fs.b.Log.String(), line) {
			t.Errorf("the shim's log has no %q:\n%s", line, fs.b.Log.String())
		}
	}
}

// A shim that exits with events it could not deliver logs each of them.
func publishLostAtExit(t *testing.T, c *harness.Containerd) {
	ev := c.Events(t)
	id := c.ID("lost")
	fs := startFaultShim(t, c, id, []string{"echo", "lost"}, "shim.publish", nil)
	fs.run(t, c, &taskapi.CreateTaskRequest{ID: id, Bundle: fs.b.Path, Rootfs: fs.b.Rootfs}, "lost\n")
	if err := fs.s.Task.Shutdown(fs.ctx, &taskapi.ShutdownRequest{ID: id}); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	fs.s.Client.Close()
	harness.Eventually(t, 30*time.Second, "the shim exits", func() bool { return !harness.ProcessAlive(fs.pid) })
	for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
		found := false
		for _, l := range strings.Split(fs.b.Log.String(), "\n") {
			if strings.Contains(l, "event not delivered: shim is exiting") && strings.Contains(l, "topic="+topic) {
				found = true
			}
		}
		if !found {
			t.Errorf("the shim's log does not name the undelivered %s:\n%s", topic, fs.b.Log.String())
		}
	}
	if got := ev.Task(id); len(got) != 0 {
		t.Errorf("events of %s reached containerd through a publisher that always fails: %v", id, harness.Topics(got))
	}
}
