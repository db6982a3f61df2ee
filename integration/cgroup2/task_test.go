//go:build cgroup2vm

package cgroup2

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// The systemd driver's cgroupsPath is slice:prefix:name; runc makes the scope unit <prefix>-<name>.scope in the
// slice. Slice names nest at each dash: podv2test-pod1.slice is a child of podv2test.slice.
const (
	defaultSlice = "podv2test.slice"
	scopePrefix  = "podv2"
)

// spec is what a scenario's container looks like.
type spec struct {
	id         string
	args       []string
	parent     string // cgroup parent: a cgroup under the root (cgroupfs) or a slice (systemd); "" for the default
	memLimit   uint64 // bytes, 0 for none
	hostPID    bool   // share the host's pid namespace (its processes do not die with init)
	pod        string // pod key: containers with the same key are served by one shim
	shimCgroup string // runtime option ShimCgroup
}

// ctask is a scenario's container and its task.
type ctask struct {
	e      *env
	s      spec
	c      client.Container
	task   client.Task
	exitC  <-chan client.ExitStatus
	stdout *buffer
	cgroup string // the container's cgroup directory
	unit   string // its scope unit (systemd driver)
	done   bool   // deleted, and checked gone
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// cgroupsPath is the spec's linux.cgroupsPath for s under the env's driver.
func (e *env) cgroupsPath(s spec) string {
	if e.systemd() {
		slice := defaultSlice
		if s.parent != "" {
			slice = s.parent
		}
		return slice + ":" + scopePrefix + ":" + s.id
	}
	parent := e.c.Namespace
	if s.parent != "" {
		parent = s.parent
	}
	return "/" + parent + "/" + s.id
}

// expectedCgroup is the directory the container's cgroup must have.
func (e *env) expectedCgroup(s spec) string {
	path := e.cgroupsPath(s)
	if !e.systemd() {
		return filepath.Join(cgroupRoot, path)
	}
	slice, _, _ := strings.Cut(path, ":")
	return filepath.Join(cgroupRoot, sliceDir(slice), scopePrefix+"-"+s.id+".scope")
}

// sliceDir is where systemd puts a slice: a-b.slice is /a.slice/a-b.slice.
func sliceDir(slice string) string {
	name := strings.TrimSuffix(slice, ".slice")
	parts := strings.Split(name, "-")
	dir := "/"
	for i := range parts {
		dir = filepath.Join(dir, strings.Join(parts[:i+1], "-")+".slice")
	}
	return dir
}

// create makes the container and its task (not started), and checks where its cgroup is.
func (e *env) create(ctx context.Context, t *testing.T, r *report, s spec) *ctask {
	t.Helper()
	img, err := e.cl.GetImage(ctx, e.c.Image)
	if err != nil {
		t.Fatalf("GetImage %s: %v", e.c.Image, err)
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs(s.args...), oci.WithCgroup(e.cgroupsPath(s))}
	if s.memLimit > 0 {
		specOpts = append(specOpts, oci.WithMemoryLimit(s.memLimit))
	}
	if s.hostPID {
		specOpts = append(specOpts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if s.pod != "" {
		specOpts = append(specOpts, oci.WithAnnotations(map[string]string{harness.GroupAnnotation(e.c.Runtime): s.pod}))
	}
	opts := &runcoptions.Options{SystemdCgroup: e.systemd(), ShimCgroup: s.shimCgroup}
	c, err := e.cl.NewContainer(ctx, s.id,
		client.WithImage(img),
		client.WithNewSnapshot(s.id+"-snapshot", img),
		client.WithRuntime(e.c.Runtime, opts),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		t.Fatalf("NewContainer %s: %v", s.id, err)
	}
	ct := &ctask{e: e, s: s, c: c, stdout: &buffer{}}
	t.Cleanup(func() { ct.cleanup() })
	ct.task, err = c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, ct.stdout, ct.stdout), cio.WithFIFODir(e.c.FifoDir)))
	if err != nil {
		t.Fatalf("NewTask %s (cgroupsPath %s): %v", s.id, e.cgroupsPath(s), err)
	}
	if ct.exitC, err = ct.task.Wait(ctx); err != nil {
		t.Fatalf("Wait %s: %v", s.id, err)
	}
	ct.cgroup, err = cgroupOf(int(ct.task.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.expectedCgroup(s); ct.cgroup != want {
		t.Fatalf("container %s is in cgroup %s, want %s (cgroupsPath %s)", s.id, ct.cgroup, want, e.cgroupsPath(s))
	}
	if e.systemd() {
		ct.unit = filepath.Base(ct.cgroup)
		load, active, err := unitState(ct.unit)
		if err != nil || load != "loaded" || active != "active" {
			t.Fatalf("scope unit %s after create: LoadState=%s ActiveState=%s %v", ct.unit, load, active, err)
		}
		r.checked("scope %s active at %s", ct.unit, ct.cgroup)
	}
	return ct
}

// start starts the task.
func (ct *ctask) start(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := ct.task.Start(ctx); err != nil {
		t.Fatalf("Start %s: %v", ct.s.id, err)
	}
}

// waitExit waits for the task's exit and returns its status.
func (ct *ctask) waitExit(t *testing.T) uint32 {
	t.Helper()
	select {
	case st := <-ct.exitC:
		code, _, err := st.Result()
		if err != nil {
			t.Fatalf("exit status of %s: %v", ct.s.id, err)
		}
		return code
	case <-time.After(waitLong):
		t.Fatalf("%s did not exit within %v (output %q)", ct.s.id, waitLong, ct.stdout.String())
	}
	return 0
}

// metrics reads the task's metrics, which must be io.containerd.cgroups.v2.Metrics.
func (ct *ctask) metrics(ctx context.Context, t *testing.T) *v2stats.Metrics {
	t.Helper()
	m, err := ct.task.Metrics(ctx)
	if err != nil {
		t.Fatalf("Metrics %s: %v", ct.s.id, err)
	}
	if u := m.Data.GetTypeUrl(); !strings.HasSuffix(u, "io.containerd.cgroups.v2.Metrics") {
		t.Fatalf("Metrics %s: type %q, want io.containerd.cgroups.v2.Metrics", ct.s.id, u)
	}
	var v2 v2stats.Metrics
	if err := proto.Unmarshal(m.Data.GetValue(), &v2); err != nil {
		t.Fatalf("Metrics %s: %v", ct.s.id, err)
	}
	return &v2
}

// remove kills the task if it still runs, deletes it and the container, and checks that the container's cgroup
// (and, with systemd, its scope unit) is gone.
func (ct *ctask) remove(ctx context.Context, t *testing.T, r *report) {
	t.Helper()
	if st, err := ct.task.Status(ctx); err == nil && st.Status != client.Stopped {
		if err := ct.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil {
			t.Fatalf("Kill %s: %v", ct.s.id, err)
		}
		ct.waitExit(t)
	}
	if _, err := ct.task.Delete(ctx); err != nil {
		t.Fatalf("task Delete %s: %v", ct.s.id, err)
	}
	if err := ct.c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
		t.Fatalf("container Delete %s: %v", ct.s.id, err)
	}
	ct.done = true
	harness.Eventually(t, waitShort, "cgroup "+ct.cgroup+" removed after delete", func() bool { return !exists(ct.cgroup) })
	if ct.unit == "" {
		r.checked("cgroup %s gone after delete", ct.cgroup)
		return
	}
	var load, active string
	harness.Eventually(t, waitShort, "scope unit "+ct.unit+" gone after delete", func() bool {
		var err error
		load, active, err = unitState(ct.unit)
		return err == nil && active == "inactive"
	})
	r.checked("cgroup %s and scope %s gone after delete (LoadState=%s ActiveState=%s)", ct.cgroup, ct.unit, load, active)
}

// cleanup removes what a failed scenario left.
func (ct *ctask) cleanup() {
	if ct.done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if ct.task != nil {
		_, _ = ct.task.Delete(ctx, client.WithProcessKill)
	}
	_ = ct.c.Delete(ctx, client.WithSnapshotCleanup)
	if ct.unit != "" {
		_, _ = systemctl("stop", ct.unit)
		_, _ = systemctl("reset-failed", ct.unit)
	}
}
