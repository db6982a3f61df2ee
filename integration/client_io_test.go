package integration

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// What containerd's Go client does, as nerdctl and other clients use it,
// must work as it does with the reference shim.

// stdinCloser is nerdctl's stdin wrapper (pkg/taskutil StdinCloser): the
// Read that meets the end of the client's stdin calls closer, which sends
// CloseIO if it can.
type stdinCloser struct {
	r      io.Reader
	closer func()
	once   sync.Once
}

func (s *stdinCloser) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil {
		s.once.Do(s.closer)
	}
	return n, err
}

// Piped stdin as released nerdctl (2.0 - 2.3) sends it: when its stdin ends
// it looks the task up and calls CloseIO only if that finds the task (run),
// or only once Exec has returned (exec); else its CloseIO is lost and the
// container never gets EOF. The client's writes wait until the shim opens
// the stdin fifo; the reference shim opens it after the runtime created the
// container and at an exec's Start, and makes a lookup during Create wait
// for it (up to containerd 2.3). A slow createRuntime hook makes the order
// certain: a shim that opened stdin earlier lets the client's stdin end
// during the hook, while the task cannot be found.
func TestPipedStdinAsNerdctlSendsIt(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) && !c.Flavour.Is16() {
			t.Skip("containerd 2.4's reference shim answers a lookup during Create with NotFound (it no longer holds its lock across runc create): nerdctl's CloseIO is lost there by design")
		}
		cl, ctx := newClient(t, c)
		img, err := cl.GetImage(ctx, c.Image)
		if err != nil {
			t.Fatal(err)
		}
		id := c.ID("nerdrun")
		slowHook := func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			if s.Hooks == nil {
				s.Hooks = &specs.Hooks{}
			}
			s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, specs.Hook{Path: "/bin/busybox", Args: []string{"busybox", "sleep", "0.5"}})
			return nil
		}
		ctr, err := cl.NewContainer(ctx, id, client.WithImage(img), client.WithNewSnapshot(id+"-snapshot", img),
			client.WithRuntime(c.Runtime, nil),
			client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "cat; echo eof"), slowHook))
		if err != nil {
			t.Fatalf("NewContainer: %v", err)
		}
		t.Cleanup(func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if task, err := ctr.Task(dctx, nil); err == nil {
				_, _ = task.Delete(dctx, client.WithProcessKill)
			}
			_ = ctr.Delete(dctx, client.WithSnapshotCleanup)
		})
		var lost atomic.Value // why CloseIO was not sent
		in := &stdinCloser{r: strings.NewReader("l1\n"), closer: func() {
			task, err := ctr.Task(ctx, nil)
			if err != nil {
				lost.Store("task lookup at the end of stdin: " + err.Error())
				return
			}
			if err := task.CloseIO(ctx, client.WithStdinCloser); err != nil {
				lost.Store("CloseIO: " + err.Error())
			}
		}}
		out := &syncBuffer{}
		task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(in, out, out), cio.WithFIFODir(c.FifoDir)))
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		exitC, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		select {
		case <-exitC:
		case <-time.After(20 * time.Second):
			t.Fatalf("run: the container never saw the end of its stdin (CloseIO lost: %v; stdout %q)", lost.Load(), out.String())
		}
		if got := out.String(); got != "l1\neof\n" {
			t.Errorf("run: stdout %q, want %q", got, "l1\neof\n")
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Fatalf("Delete: %v", err)
		}

		// nerdctl exec -i: the closer is set only once Exec has returned.
		run, err := newClientTask(ctx, t, cl, c, containerSpec{id: c.ID("nerdexec"), args: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := run.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		spec, err := run.c.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps := spec.Process
		ps.Args = []string{"sh", "-c", "cat; echo eof"}
		var proc atomic.Pointer[client.Process]
		execOut := &syncBuffer{}
		execIn := &stdinCloser{r: strings.NewReader("e1\n"), closer: func() {
			p := proc.Load()
			if p == nil {
				lost.Store("exec's stdin ended before Exec returned")
				return
			}
			if err := (*p).CloseIO(ctx, client.WithStdinCloser); err != nil {
				lost.Store("exec CloseIO: " + err.Error())
			}
		}}
		p, err := run.task.Exec(ctx, "in", ps, cio.NewCreator(cio.WithStreams(execIn, execOut, nil), cio.WithFIFODir(c.FifoDir)))
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		proc.Store(&p)
		execExit, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatalf("exec Start: %v", err)
		}
		select {
		case <-execExit:
		case <-time.After(20 * time.Second):
			t.Fatalf("exec: the process never saw the end of its stdin (CloseIO lost: %v; stdout %q)", lost.Load(), execOut.String())
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("exec Delete: %v", err)
		}
		if got := execOut.String(); got != "e1\neof\n" {
			t.Errorf("exec stdout %q, want %q", got, "e1\neof\n")
		}
	})
}

// nerdctl's fixed closer (its main branch) sends an exec's CloseIO once
// Exec has returned: with empty stdin that is before Start. The reference
// shim drops a CloseIO before Start; ours keeps it, and the exec gets EOF.
func TestExecCloseIOBeforeStart(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Skip("the reference shim ignores a CloseIO before an exec's Start")
		}
		cl, ctx := newClient(t, c)
		run, err := newClientTask(ctx, t, cl, c, containerSpec{id: c.ID("early"), args: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := run.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		spec, err := run.c.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps := spec.Process
		ps.Args = []string{"sh", "-c", "cat; echo eof"}
		out := &syncBuffer{}
		p, err := run.task.Exec(ctx, "empty", ps, cio.NewCreator(cio.WithStreams(strings.NewReader(""), out, nil), cio.WithFIFODir(c.FifoDir)))
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		if err := p.CloseIO(ctx, client.WithStdinCloser); err != nil {
			t.Fatalf("CloseIO before Start: %v", err)
		}
		exitC, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatalf("exec Start: %v", err)
		}
		select {
		case <-exitC:
		case <-time.After(20 * time.Second):
			t.Fatalf("the exec never saw the end of its empty stdin (stdout %q)", out.String())
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("exec Delete: %v", err)
		}
		if got := out.String(); got != "eof\n" {
			t.Errorf("stdout %q, want %q", got, "eof\n")
		}
	})
}

// An exec with a terminal whose process spec is a copy of the container's
// (terminal false there), as containerd's client builds it: the request's
// terminal wins. nerdctl exec -it resizes the terminal before Start: the
// size is kept and is the terminal's when the process runs.
func TestExecTerminalAsClientsAskForIt(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		cl, ctx := newClient(t, c)
		run, err := newClientTask(ctx, t, cl, c, containerSpec{id: c.ID("tty"), args: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := run.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		spec, err := run.c.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps := spec.Process
		if ps.Terminal {
			t.Fatal("the container's process spec has a terminal: the test means to copy one without")
		}
		ps.Args = []string{"sh", "-c", "tty; stty size"}
		out := &syncBuffer{}
		p, err := run.task.Exec(ctx, "tty", ps, cio.NewCreator(cio.WithStreams(nil, out, nil), cio.WithTerminal, cio.WithFIFODir(c.FifoDir)))
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		if err := p.Resize(ctx, 100, 33); err != nil {
			t.Errorf("Resize before Start: %v", err)
		}
		exitC, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatalf("Start of an exec with a terminal: %v", err)
		}
		select {
		case <-exitC:
		case <-time.After(20 * time.Second):
			t.Fatalf("the exec never ended (output so far %q)", out.String())
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("exec Delete: %v", err)
		}
		got := out.String()
		if !strings.Contains(got, "/dev/pts/") {
			t.Errorf("the exec has no terminal: %q", got)
		}
		if !strings.Contains(got, "33 100") {
			t.Errorf("terminal size is not the 100x33 asked for before Start: %q", got)
		}
	})
}
