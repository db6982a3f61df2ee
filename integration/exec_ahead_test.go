package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// waitingExecRuntimes lists the runtime processes our shim started for an added exec of container id, waiting for
// the process spec on a pipe (runc exec --process /proc/self/fd/3 ... id).
func waitingExecRuntimes(id string) []harness.Process {
	return harness.Processes(func(argv []string) bool {
		spec := false
		for _, a := range argv {
			spec = spec || a == "/proc/self/fd/3"
		}
		return spec && argv[len(argv)-1] == id
	})
}

// addExec adds (does not start) an exec running sh -c script, with stdout and stderr captured.
func addExec(ctx context.Context, t *testing.T, cc *clientContainer, execID, script string) (client.Process, *syncBuffer, *syncBuffer) {
	t.Helper()
	spec, err := cc.c.Spec(ctx)
	if err != nil {
		t.Fatalf("container spec: %v", err)
	}
	pspec := *spec.Process
	pspec.Args = []string{"sh", "-c", script}
	pspec.Terminal = false
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	p, err := cc.task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, stdout, stderr)))
	if err != nil {
		t.Fatalf("Exec %s: %v", execID, err)
	}
	return p, stdout, stderr
}

// runExec starts an added exec and returns its exit code once it is deleted (output drained).
func runExec(ctx context.Context, t *testing.T, p client.Process) uint32 {
	t.Helper()
	exitC, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait %s: %v", p.ID(), err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start %s: %v", p.ID(), err)
	}
	var code uint32
	select {
	case st := <-exitC:
		code = st.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("exec %s: no exit within 30s", p.ID())
	}
	if _, err := p.Delete(ctx); err != nil {
		t.Fatalf("Delete %s: %v", p.ID(), err)
	}
	return code
}

// An exec is readied when containerd adds it (stdio set up, runc exec started and waiting for the process spec), but
// nothing runs in the container before Start: Start on a paused container is refused; an exec deleted unstarted leaves
// no runtime process; a waiting runtime that died is replaced at Start; the process holds no descriptor of the shim or
// of runc beyond its stdio.
func TestExecReadiedAhead(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		cl, ctx := newClient(t, c)
		id := c.ID("ahead")
		cc, err := newClientTask(ctx, t, cl, c, containerSpec{id: id, args: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := cc.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		ours := harness.IsOurs(c.Runtime)

		// Added: the runtime waits, the process does not run yet.
		p, _, _ := addExec(ctx, t, cc, "early", "touch /tmp/ran")
		if n := len(waitingExecRuntimes(id)); ours && n != 1 {
			t.Fatalf("want one runtime waiting for the exec's spec, got %d", n)
		}
		time.Sleep(300 * time.Millisecond)
		if r := c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", "check", id, "test", "-e", "/tmp/ran"); r.Code == 0 {
			t.Fatalf("the added exec ran before Start")
		}

		// Paused between Exec and Start: Start is refused (the client then closes the exec's stdio and deletes it),
		// and the exec never runs.
		if err := cc.task.Pause(ctx); err != nil {
			t.Fatalf("Pause: %v", err)
		}
		err = p.Start(ctx)
		if err == nil {
			t.Fatalf("Start of an exec in a paused container succeeded")
		}
		if ours && !errdefs.IsFailedPrecondition(err) {
			t.Errorf("Start in a paused container: want FailedPrecondition, got %v", err)
		}
		// (The reference shim refuses to delete an exec of a paused container.)
		if err := cc.task.Resume(ctx); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("Delete of the refused exec: %v", err)
		}
		harness.Eventually(t, 5*time.Second, "no runtime waits for the refused exec", func() bool {
			return len(waitingExecRuntimes(id)) == 0
		})
		if r := c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", "check1", id, "test", "-e", "/tmp/ran"); r.Code == 0 {
			t.Fatalf("the refused exec ran")
		}

		// A started exec holds no descriptor beyond its stdio: none of the shim's, none of the runtime's (its
		// spec pipe included).
		p, _, _ = addExec(ctx, t, cc, "fds", "exec sleep 1000")
		exitC, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("Wait fds: %v", err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatalf("Start fds: %v", err)
		}
		// The runtime may return before its init in the container has exec'd the process (its own sync and log
		// descriptors are open until then, close-on-exec): look once the process is the sleep.
		comm := fmt.Sprintf("/proc/%d/comm", p.Pid())
		harness.Eventually(t, 10*time.Second, "the exec runs sleep", func() bool {
			b, err := os.ReadFile(comm)
			return err == nil && strings.TrimSpace(string(b)) == "sleep"
		})
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
		if err != nil {
			t.Fatalf("read the exec's fds: %v", err)
		}
		var names []string
		for _, fd := range fds {
			names = append(names, fd.Name())
		}
		if strings.Join(names, " ") != "0 1 2" {
			t.Errorf("the exec's descriptors are %v, want only 0 1 2", names)
		}
		if err := p.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatalf("Kill fds: %v", err)
		}
		select {
		case <-exitC:
		case <-time.After(30 * time.Second):
			t.Fatal("the killed exec did not exit")
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("Delete fds: %v", err)
		}

		// Added and deleted unstarted: the waiting runtime goes, the container runs on.
		p, _, _ = addExec(ctx, t, cc, "never", "touch /tmp/never")
		if _, err := p.Delete(ctx); err != nil {
			t.Fatalf("Delete of an unstarted exec: %v", err)
		}
		harness.Eventually(t, 5*time.Second, "no runtime waits for the deleted exec", func() bool {
			return len(waitingExecRuntimes(id)) == 0
		})
		if r := c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", "check2", id, "test", "-e", "/tmp/never"); r.Code == 0 {
			t.Fatalf("the deleted exec ran")
		}

		// The waiting runtime dies (killed from outside): Start runs the exec anyway.
		p, stdout, _ := addExec(ctx, t, cc, "again", "echo replaced")
		if ours {
			waiting := waitingExecRuntimes(id)
			if len(waiting) != 1 {
				t.Fatalf("want one waiting runtime, got %v", waiting)
			}
			if err := syscall.Kill(waiting[0].PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			harness.Eventually(t, 5*time.Second, "the killed runtime is gone", func() bool { return !harness.ProcessAlive(waiting[0].PID) })
		}
		if code := runExec(ctx, t, p); code != 0 || stdout.String() != "replaced\n" {
			t.Fatalf("exec after its runtime died: exit %d, stdout %q", code, stdout.String())
		}
		if n := len(waitingExecRuntimes(id)); n != 0 {
			t.Errorf("%d runtimes still wait after the execs", n)
		}
	})
}
