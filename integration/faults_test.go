package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

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
	podDerived = "derived" // a new user namespace: the one owning another process's network namespace, named by path
	podMounts2 = "mounts2" // a new network namespace, and a rootfs of two mounts
)

type faultRow struct {
	fault string // a runtime command ("runc create") or a shim fault step ("task.mount@2")
	op    string // the request that hits it: create, start, exec, kill, delete, pause, resume, update, ps
	via   string // viaClient or viaDirect
	pod   string // direct rows: the pod (podNetns...)
}

// kind is the errdefs kind a row's request fails with: a failure of the
// runtime or inside the shim has no kind of its own (containerd-shim-runc-v2
// answers the same runtime failures with Unknown, which the runtime rows
// check again).
func (r faultRow) kind() string { return "Unknown" }

// runtimeFault says whether the row's fault is the runtime's.
func (r faultRow) runtimeFault() bool { return strings.HasPrefix(r.fault, "runc ") }

// command is the failing runtime command of a runtime row.
func (r faultRow) command() string { return strings.TrimPrefix(r.fault, "runc ") }

// step is the shim fault step of a shim row, without its count.
func (r faultRow) step() string { s, _, _ := strings.Cut(r.fault, "@"); return s }

func (r faultRow) name() string {
	n := strings.NewReplacer(" ", "-", ",", "+").Replace(r.fault) + "_" + strings.ReplaceAll(r.op, " ", "-")
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
	{fault: "pod.pin@1", op: "create", via: viaDirect, pod: podDerived},
	{fault: "task.mount@2", op: "create", via: viaDirect, pod: podMounts2},

	// containerd does not take the container's events: the first three
	// tries, or every one.
	{fault: "shim.publish@1,shim.publish@2,shim.publish@3", op: "events", via: viaDirect, pod: podNetns},
	{fault: "shim.publish", op: "shim exit", via: viaDirect, pod: podNetns},
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
					switch {
					case row.via != viaDirect:
					case row.op == "events":
						t.Run(row.name(), func(t *testing.T) { publishRetried(t, c, row) })
					case row.op == "shim exit":
						t.Run(row.name(), func(t *testing.T) { publishLostAtExit(t, c, row) })
					default:
						t.Run(row.name(), func(t *testing.T) { directFaultRow(t, c, row) })
					}
				}
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

// checkLives checks the events containerd got of container id: each of its
// lives (a create that worked, to its delete) is /tasks/create, start, exit
// and delete, once each and in order, and a failed request published
// nothing. In the first life, op was retried: a pause or resume row paused
// and resumed the container once each; in an exec row, exec "e" was added
// twice (the failed one and its retry) and started and exited once (the
// exec's events are checked apart from the container's).
func checkLives(t *testing.T, ev *harness.Events, id string, lives int, op string) {
	t.Helper()
	var want []string
	for i := range lives {
		want = append(want, "/tasks/create", "/tasks/start")
		if i == 0 && (op == "pause" || op == "resume") {
			want = append(want, "/tasks/paused", "/tasks/resumed")
		}
		want = append(want, "/tasks/exit", "/tasks/delete")
	}
	var got, execs []string
	harness.WaitUntil(10*time.Second, func() bool {
		got, execs = nil, nil
		for _, e := range ev.Task(id) {
			switch {
			case e.Topic == "/tasks/exec-added" || e.Topic == "/tasks/exec-started":
				execs = append(execs, e.Topic+" "+e.Str("exec_id"))
			case e.Topic == "/tasks/exit" && e.Str("id") != id:
				execs = append(execs, e.Topic+" "+e.Str("id"))
			default:
				got = append(got, e.Topic)
			}
		}
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		t.Errorf("events of %s: %v; want %v", id, got, want)
	}
	var wantExecs []string
	if op == "exec" {
		wantExecs = []string{"/tasks/exec-added e", "/tasks/exec-added e", "/tasks/exec-started e", "/tasks/exit e"}
	}
	if !slices.Equal(execs, wantExecs) {
		t.Errorf("exec events of %s: %v; want %v", id, execs, wantExecs)
	}
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
