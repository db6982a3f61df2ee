package integration

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// syncBuffer is a bytes.Buffer safe for cio's copy goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newClient connects containerd's v2 Go client to the test daemon. The v2 client works against containerd 1.6 too
// (TestGoClient proves it): it only uses services 1.6 has (containers, images, content, snapshots, tasks, leases).
func newClient(t *testing.T, c *harness.Containerd) (*client.Client, context.Context) {
	t.Helper()
	cl, err := client.New(c.Address, client.WithDefaultNamespace(c.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("client.New(%s): %v", c.Address, err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return cl, ctx
}

// clientContainer is a container made through the Go client.
type clientContainer struct {
	c      client.Container
	task   client.Task
	exitC  <-chan client.ExitStatus
	stdout *syncBuffer
	stderr *syncBuffer
}

type containerSpec struct {
	id          string
	args        []string
	stdin       []byte
	runtimeOpts any // nil: no options
	annotations map[string]string
	specOpts    []oci.SpecOpts // applied after the image's config and the args
}

// newClientTask creates the container and its task (not started) with runtime c.Runtime; stdout and stderr are
// captured through cio fifos in the test's directory.
func newClientTask(ctx context.Context, t *testing.T, cl *client.Client, c *harness.Containerd, s containerSpec) (*clientContainer, error) {
	t.Helper()
	img, err := cl.GetImage(ctx, c.Image)
	if err != nil {
		t.Fatalf("GetImage %s: %v", c.Image, err)
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs(s.args...)}
	if len(s.annotations) > 0 {
		specOpts = append(specOpts, oci.WithAnnotations(s.annotations))
	}
	specOpts = append(specOpts, s.specOpts...)
	ctr, err := cl.NewContainer(ctx, s.id,
		client.WithImage(img),
		client.WithNewSnapshot(s.id+"-snapshot", img),
		client.WithRuntime(c.Runtime, s.runtimeOpts),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		t.Fatalf("NewContainer %s: %v", s.id, err)
	}
	cc := &clientContainer{c: ctr, stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cc.task != nil {
			_, _ = cc.task.Delete(dctx, client.WithProcessKill)
		}
		_ = ctr.Delete(dctx, client.WithSnapshotCleanup)
	})
	var stdin *bytes.Reader
	if s.stdin != nil {
		stdin = bytes.NewReader(s.stdin)
	}
	streams := cio.WithStreams(nil, cc.stdout, cc.stderr)
	if stdin != nil {
		streams = cio.WithStreams(stdin, cc.stdout, cc.stderr)
	}
	task, err := ctr.NewTask(ctx, cio.NewCreator(streams, cio.WithFIFODir(c.FifoDir)))
	if err != nil {
		return cc, err
	}
	cc.task = task
	cc.exitC, err = task.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait %s: %v", s.id, err)
	}
	return cc, nil
}

// finish waits for the exit, deletes the task (which waits for the I/O to drain) and returns the exit code.
func (cc *clientContainer) finish(ctx context.Context, t *testing.T, timeout time.Duration) uint32 {
	t.Helper()
	var code uint32
	select {
	case st := <-cc.exitC:
		var err error
		code, _, err = st.Result()
		if err != nil {
			t.Fatalf("exit status: %v", err)
		}
	case <-time.After(timeout):
		t.Fatalf("no exit within %v (stdout %q, stderr %q)", timeout, cc.stdout.String(), cc.stderr.String())
	}
	st, err := cc.task.Delete(ctx)
	if err != nil {
		t.Fatalf("task Delete: %v", err)
	}
	if st.ExitCode() != code {
		t.Errorf("Delete reports exit %d, Wait reported %d", st.ExitCode(), code)
	}
	cc.task = nil
	return code
}

// The Go client (containerd v2 client, in this module only) drives a container of runtime R under both containerd
// 1.6 and 2.4: create, start, wait; exit status, stdout and stderr captured through cio, stdin closed with CloseIO.
func TestGoClient(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		cl, ctx := newClient(t, c)
		id := c.ID("client")
		cc, err := newClientTask(ctx, t, cl, c, containerSpec{
			id:    id,
			args:  []string{"sh", "-c", "read line; echo out $line; echo err >&2; exit 7"},
			stdin: []byte("ping\n"),
		})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		st, err := cc.task.Status(ctx)
		if err != nil || st.Status != client.Created {
			t.Fatalf("status after create: %v %v", st, err)
		}
		if cc.task.Pid() == 0 {
			t.Errorf("task pid is 0 after create")
		}
		if err := cc.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		// The client wrote all of stdin into the fifo; EOF reaches the container only through CloseIO.
		if err := cc.task.CloseIO(ctx, client.WithStdinCloser); err != nil {
			t.Fatalf("CloseIO: %v", err)
		}
		if code := cc.finish(ctx, t, 30*time.Second); code != 7 {
			t.Errorf("exit code %d, want 7", code)
		}
		if got := cc.stdout.String(); got != "out ping\n" {
			t.Errorf("stdout %q, want %q", got, "out ping\n")
		}
		if got := cc.stderr.String(); got != "err\n" {
			t.Errorf("stderr %q, want %q", got, "err\n")
		}
		if err := cc.c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
			t.Fatalf("container Delete: %v", err)
		}
		c.CheckGone(t, id, id)
	})
}

// A container whose runtime binary (options BinaryName) does not exist fails with an error naming the binary, and the
// shim of its pod keeps serving the pod's other containers: the one running before, and a new one after.
//
// Through the Go client: ctr passes runc options (--runc-binary) only to io.containerd.runc.v2 and refuses the flag
// for any other runtime (ctr 1.6 and 2.4 alike), so ctr cannot name a runtime binary for io.containerd.pod.v2.
func TestMissingRuntimeBinary(t *testing.T) {
	const missing = "/nonexistent/runc-missing"
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		cl, ctx := newClient(t, c)
		pod := c.ID("pod")
		ann := map[string]string{harness.GroupAnnotation(c.Runtime): pod}

		a, err := newClientTask(ctx, t, cl, c, containerSpec{id: c.ID("a"), args: []string{"sleep", "1000"}, annotations: ann})
		if err != nil {
			t.Fatalf("NewTask a: %v", err)
		}
		if err := a.task.Start(ctx); err != nil {
			t.Fatalf("Start a: %v", err)
		}
		shims := c.ShimProcesses(c.Runtime, "")
		if len(shims) != 1 {
			t.Fatalf("want 1 shim process for the pod, got %v", shims)
		}

		bID := c.ID("b")
		b, err := newClientTask(ctx, t, cl, c, containerSpec{id: bID, args: []string{"true"}, annotations: ann,
			runtimeOpts: &runcoptions.Options{BinaryName: missing}})
		if err == nil {
			t.Fatalf("NewTask with BinaryName %s succeeded", missing)
		}
		if !strings.Contains(err.Error(), missing) {
			t.Errorf("the error does not name the binary %s: %v", missing, err)
		}
		t.Logf("error for the missing binary: %v", err)

		// The pod's shim is the same process and still serves a.
		if now := c.ShimProcesses(c.Runtime, ""); len(now) != 1 || now[0].PID != shims[0].PID {
			t.Fatalf("shim processes changed: before %v, after %v", shims, now)
		}
		st, err := a.task.Status(ctx)
		if err != nil || st.Status != client.Running {
			t.Fatalf("a after the failed create: status %v, err %v", st, err)
		}
		// b left nothing in the shim: no runc state, no rootfs mount.
		if harness.Exists(c.RuncStateDir(bID)) || len(c.RootfsMounts(bID)) > 0 {
			t.Errorf("b left runc state or mounts: %v %v", harness.Exists(c.RuncStateDir(bID)), c.RootfsMounts(bID))
		}

		// A new container of the pod works.
		cID := c.ID("c")
		cc, err := newClientTask(ctx, t, cl, c, containerSpec{id: cID, args: []string{"echo", "ok"}, annotations: ann})
		if err != nil {
			t.Fatalf("NewTask c after the failure: %v", err)
		}
		if err := cc.task.Start(ctx); err != nil {
			t.Fatalf("Start c: %v", err)
		}
		if code := cc.finish(ctx, t, 30*time.Second); code != 0 || cc.stdout.String() != "ok\n" {
			t.Fatalf("c: exit %d, stdout %q", code, cc.stdout.String())
		}

		if err := a.task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("Kill a: %v", err)
		}
		if code := a.finish(ctx, t, 30*time.Second); code != 137 {
			t.Errorf("a: exit %d, want 137", code)
		}
		for _, cont := range []client.Container{a.c, b.c, cc.c} {
			if err := cont.Delete(ctx, client.WithSnapshotCleanup); err != nil {
				t.Errorf("delete %s: %v", cont.ID(), err)
			}
		}
		// Nothing of the three is left, and the pod's shim is gone. (Its socket too, for ours: the reference shim
		// of containerd 2.4 leaks the socket of a grouped shim, since it cleans up the socket named after its -id.)
		for _, id := range []string{a.c.ID(), bID, cID} {
			c.CheckGone(t, id, "")
		}
		harness.Eventually(t, 10*time.Second, "the pod's shim exits", func() bool { return len(c.ShimProcesses(c.Runtime, "")) == 0 })
		if sock := strings.TrimPrefix(c.ShimSocketAddress(pod), "unix://"); harness.IsOurs(c.Runtime) && harness.Exists(sock) {
			t.Errorf("the pod's shim socket %s is left", sock)
		}

		// With ctr: only io.containerd.runc.v2 accepts --runc-binary.
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runc-binary", missing, "--runtime", c.Runtime, c.Image, c.ID("ctr"), "true")
		if r.Code == 0 {
			t.Fatalf("ctr run --runc-binary %s succeeded: %v", missing, r)
		}
		if c.Runtime == harness.RuntimeRunc && !strings.Contains(r.Stderr, missing) {
			t.Errorf("ctr's error does not name %s: %v", missing, r)
		}
		if c.Runtime != harness.RuntimeRunc && !strings.Contains(r.Stderr, "only supported for \"io.containerd.runc.v2\"") {
			t.Errorf("expected ctr to refuse --runc-binary for %s: %v", c.Runtime, r)
		}
	})
}
