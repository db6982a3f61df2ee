package integration

// The rows of TestFaults driven through a shim the test starts itself.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

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
	ev := c.Events(t)
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
		netns := namespaceHolder(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET})
		edit = func(spec *specs.Spec) { joinNetwork(spec, netns) }
	case podDerived:
		if err := os.Chmod(c.Dir, 0o711); err != nil {
			t.Fatal(err)
		}
		netns := namespaceHolder(t, &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		})
		edit = func(spec *specs.Spec) {
			joinNetwork(spec, netns)
			spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
			spec.Linux.UIDMappings, spec.Linux.GIDMappings = m, m
		}
	}
	fs := startFaultShim(t, c, id, args, row.fault, edit)
	if row.pod == podUserns || row.pod == podDerived {
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
	checkFaultError(t, errgrpc.ToNative(err), row.kind(), row.step()+": fault injected for testing", id)
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
	checkLives(t, ev, id, 2, row.op)
}

// namespaceHolder starts a `sleep` in new namespaces (attr) for the rest of
// the test and returns the path of its network namespace.
func namespaceHolder(t *testing.T, attr *syscall.SysProcAttr) string {
	t.Helper()
	holder := exec.Command("sleep", newMarker())
	holder.SysProcAttr = attr
	if err := holder.Start(); err != nil {
		t.Fatalf("a process in namespaces of its own: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	netns := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	harness.Eventually(t, 5*time.Second, "unshare made its network namespace", func() bool {
		a, _ := os.Readlink(netns)
		b, _ := os.Readlink("/proc/self/ns/net")
		return a != "" && a != b
	})
	return netns
}

// joinNetwork makes spec join the network namespace at path.
func joinNetwork(spec *specs.Spec, path string) {
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
		}
	}
}

// An event containerd cannot take is retried, in order, and delivered once.
func publishRetried(t *testing.T, c *harness.Containerd, row faultRow) {
	ev := c.Events(t)
	id := c.ID("pub")
	fs := startFaultShim(t, c, id, []string{"echo", "published"}, row.fault, nil)
	fs.run(t, c, &taskapi.CreateTaskRequest{ID: id, Bundle: fs.b.Path, Rootfs: fs.b.Rootfs}, "published\n")
	ev.MustWaitFor(t, 20*time.Second, "delete of "+id, func(e harness.Event) bool {
		return e.Topic == "/tasks/delete" && e.Str("container_id") == id
	})
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if got := harness.Topics(ev.Task(id)); !slices.Equal(got, want) {
		t.Errorf("events of %s: %v, want %v once each, in order", id, got, want)
	}
	// The shim logs a delivery once it is done, maybe after containerd
	// passed the event on.
	for _, line := range []string{"event not delivered yet, retrying", "event delivered after retries"} {
		if !harness.WaitUntil(10*time.Second, func() bool { return strings.Contains(fs.b.Log.String(), line) }) {
			t.Errorf("the shim's log has no %q:\n%s", line, fs.b.Log.String())
		}
	}
}

// A shim that exits with events it could not deliver logs each of them.
func publishLostAtExit(t *testing.T, c *harness.Containerd, row faultRow) {
	ev := c.Events(t)
	id := c.ID("lost")
	fs := startFaultShim(t, c, id, []string{"echo", "lost"}, row.fault, nil)
	fs.run(t, c, &taskapi.CreateTaskRequest{ID: id, Bundle: fs.b.Path, Rootfs: fs.b.Rootfs}, "lost\n")
	// A shim may close the connection as it goes, before Shutdown's reply
	// is out: containerd takes ErrClosed from Shutdown as done too.
	if err := fs.s.Task.Shutdown(fs.ctx, &taskapi.ShutdownRequest{ID: id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		t.Fatalf("Shutdown: %v", err)
	}
	fs.s.Client.Close()
	harness.Eventually(t, 30*time.Second, "the shim exits", func() bool { return !harness.ProcessAlive(fs.pid) })
	// What the shim wrote before it exited is still on its way through the
	// log fifo.
	for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"} {
		logged := func() bool {
			for _, l := range strings.Split(fs.b.Log.String(), "\n") {
				if strings.Contains(l, "event not delivered: shim is exiting") && strings.Contains(l, "topic="+topic) {
					return true
				}
			}
			return false
		}
		if !harness.WaitUntil(10*time.Second, logged) {
			t.Errorf("the shim's log does not name the undelivered %s:\n%s", topic, fs.b.Log.String())
		}
	}
	if got := ev.Task(id); len(got) != 0 {
		t.Errorf("events of %s reached containerd through a publisher that always fails: %v", id, harness.Topics(got))
	}
}
