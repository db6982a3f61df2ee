package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// `ctr run --rm --runtime R IMAGE id sh -c 'echo hi; exit 3'` prints hi and exits 3, and leaves nothing behind.
func TestRunExitCode(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("exit3")
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "sh", "-c", "echo hi; exit 3")
		if r.Code != 3 || r.Stdout != "hi\n" {
			t.Fatalf("want stdout %q and exit 3, got %v", "hi\n", r)
		}
		c.CheckGone(t, id, id)
	})
}

// The rootfs comes from the snapshotter: overlayfs (three image layers: three lower directories) and native (a bind
// mount); the container sees the files of every layer and can write to its rootfs.
func TestSnapshotterMounts(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		for _, sn := range []string{"overlayfs", "native"} {
			id := c.ID(sn)
			script := "cat /etc/podtest-release && ls /bin/busybox /bin/wc >/dev/null && echo x > /written && cat /written && " +
				"grep ' / ' /proc/self/mountinfo | head -1"
			r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--snapshotter", sn, "--runtime", c.Runtime, c.Image, id, "sh", "-c", script)
			if r.Code != 0 || !strings.HasPrefix(r.Stdout, "podtest 1\nx\n") {
				t.Fatalf("%s: %v", sn, r)
			}
			t.Logf("%s: root mount inside the container: %s", sn, strings.TrimSpace(strings.SplitN(r.Stdout, "\n", 3)[2]))
			if sn == "overlayfs" && !strings.Contains(r.Stdout, " overlay ") {
				t.Errorf("overlayfs: the container's root is not an overlay mount: %q", r.Stdout)
			}
			c.CheckGone(t, id, id)
		}
	})
}

// `ctr events` shows /tasks/create, /tasks/start, /tasks/exit, /tasks/delete for the container, each once, in that
// order, with consistent payloads.
func TestEventsOrder(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("events")
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "sh", "-c", "echo hi; exit 3")
		if r.Code != 3 || r.Stdout != "hi\n" {
			t.Fatalf("want stdout hi and exit 3: %v", r)
		}
		ev.MustWaitFor(t, 10*time.Second, "/containers/delete of "+id, func(e harness.Event) bool {
			return e.Namespace == c.Namespace && e.Topic == "/containers/delete" && e.Str("id") == id
		})
		time.Sleep(500 * time.Millisecond) // a late duplicate would show up now
		got := checkTaskEventOrder(t, c, ev, id)
		create, start, exit, del := got[0], got[1], got[2], got[3]
		pid := create.Num("pid")
		if pid <= 0 || start.Num("pid") != pid || exit.Num("pid") != pid || del.Num("pid") != pid {
			t.Errorf("pids differ or are missing:%s", dump(got))
		}
		if exit.Str("id") != id || exit.Num("exit_status") != 3 || exit.Payload["exited_at"] == nil {
			t.Errorf("exit event: want id %s, exit_status 3, exited_at: %s", id, exit)
		}
		if del.Num("exit_status") != 3 {
			t.Errorf("delete event: want exit_status 3: %s", del)
		}
		if create.Str("bundle") != c.Bundle(id) {
			t.Errorf("create event: bundle %q, want %q", create.Str("bundle"), c.Bundle(id))
		}
		// containerd's own events bracket the task's.
		all := ev.All()
		idx := func(topic string) int {
			return slices.IndexFunc(all, func(e harness.Event) bool {
				return e.Topic == topic && (e.Str("id") == id || e.Str("container_id") == id)
			})
		}
		if !(idx("/containers/create") < idx("/tasks/create") && idx("/tasks/delete") < idx("/containers/delete")) {
			t.Errorf("container events do not bracket task events:%s", ev.Dump())
		}
	})
}

// checkTaskEventOrder checks that container id had /tasks/create, /tasks/start, /tasks/exit, /tasks/delete, each once,
// in that order, and returns them in that order. The order is a promise of ours only: the reference shim publishes
// asynchronously, and a Delete right after the exit can overtake the exit event (seen with containerd 2.4's
// containerd-shim-runc-v2 driven directly: create, start, delete, exit); for it a reordering is logged, not failed.
func checkTaskEventOrder(t *testing.T, c *harness.Containerd, ev *harness.Events, id string) []harness.Event {
	t.Helper()
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	got := ev.Task(id)
	topics := harness.Topics(got)
	switch {
	case slices.Equal(topics, want):
		return got
	case !harness.IsOurs(c.Runtime) && slices.Equal(slices.Sorted(slices.Values(topics)), slices.Sorted(slices.Values(want))):
		t.Logf("reference runtime published its events out of order (known upstream behaviour): %v", topics)
		slices.SortStableFunc(got, func(a, b harness.Event) int { return slices.Index(want, a.Topic) - slices.Index(want, b.Topic) })
		return got
	}
	t.Fatalf("task events of %s: want %v, each once, got%s", id, want, dump(got))
	return nil
}

func dump(events []harness.Event) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}

// stdin reaches the container: a line, and 1 MiB of random bytes (echoed back byte for byte, and checksummed inside).
// (ctr run has no -i: without -d it always connects its stdin; see harness.StdinAfter for why EOF waits.)
func TestStdin(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("stdin")
		r := c.CtrWith(harness.CtrOpts{Stdin: harness.StdinAfter([]byte("hello\n"), started(c, id))}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "cat")
		if r.Code != 0 || r.Stdout != "hello\n" {
			t.Fatalf("echo hello | cat: %v", r)
		}
		c.CheckGone(t, id, id)

		big := make([]byte, 1<<20)
		if _, err := rand.Read(big); err != nil {
			t.Fatal(err)
		}
		id = c.ID("stdin-cat")
		r = c.CtrWith(harness.CtrOpts{Stdin: harness.StdinAfter(big, started(c, id))}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "cat")
		if r.Code != 0 || r.Stdout != string(big) {
			t.Fatalf("1 MiB through cat: exit %d, %d bytes back (want %d, equal %v), stderr %q", r.Code, len(r.Stdout), len(big), r.Stdout == string(big), r.Stderr)
		}

		sum := sha256.Sum256(big)
		id = c.ID("stdin-sum")
		r = c.CtrWith(harness.CtrOpts{Stdin: harness.StdinAfter(big, started(c, id))}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "sha256sum")
		if want := hex.EncodeToString(sum[:]) + "  -\n"; r.Code != 0 || r.Stdout != want {
			t.Fatalf("1 MiB through sha256sum: want %q: %v", want, r)
		}
		c.CheckGone(t, id, id)
	})
}

// A container killed with SIGKILL exits 137: detached (task kill, then the exit event, the STOPPED task and the exit
// status that `ctr task rm` returns) and in the foreground (`ctr run` returns 137).
func TestKillExit137(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("kill")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, c.Image, id, "sleep", "1000")
		waitTaskStatus(t, c, id, "RUNNING")
		c.MustCtr(t, "tasks", "kill", "-s", "SIGKILL", id)
		exit := ev.MustWaitFor(t, 10*time.Second, "/tasks/exit of "+id, func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == id
		})
		if exit.Num("exit_status") != 137 {
			t.Errorf("exit event: want exit_status 137: %s", exit)
		}
		waitTaskStatus(t, c, id, "STOPPED")
		// ctr task rm exits 0 and warns with the task's exit status.
		r := c.CtrWith(harness.CtrOpts{}, "tasks", "rm", id)
		if r.Code != 0 || !strings.Contains(r.Stderr, "non-zero exit code 137") {
			t.Errorf("ctr tasks rm of a SIGKILLed task: want exit 0 and a warning naming exit code 137: %v", r)
		}
		c.MustCtr(t, "containers", "rm", id)
		c.CheckGone(t, id, id)

		// Foreground.
		id = c.ID("kill-fg")
		done := make(chan *harness.Result, 1)
		go func() {
			done <- c.CtrWith(harness.CtrOpts{Timeout: 60 * time.Second}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "sleep", "1000")
		}()
		waitTaskStatus(t, c, id, "RUNNING")
		c.MustCtr(t, "tasks", "kill", "-s", "SIGKILL", id)
		select {
		case r := <-done:
			if r.Code != 137 {
				t.Fatalf("ctr run of a SIGKILLed container: want exit 137: %v", r)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("ctr run did not return within 30 s of SIGKILL")
		}
		c.CheckGone(t, id, id)
	})
}

// started says whether ctr has started task id. ctr run sets its stdin closer (CloseIO on EOF) after the task is
// created and before it starts it, so an EOF after this is never lost (see harness.StdinAfter).
func started(c *harness.Containerd, id string) func() bool {
	return func() bool { st := taskStatus(c, id); return st == "RUNNING" || st == "STOPPED" }
}

// taskStatus is the STATUS column of `ctr task ls` for id ("" when not listed).
func taskStatus(c *harness.Containerd, id string) string {
	out, _, _ := c.Ctr("tasks", "ls")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

func waitTaskStatus(t *testing.T, c *harness.Containerd, id, status string) {
	t.Helper()
	var got string
	if !harness.WaitUntil(20*time.Second, func() bool { got = taskStatus(c, id); return got == status }) {
		out, _, _ := c.Ctr("tasks", "ls")
		t.Fatalf("task %s: status %q, want %q; ctr tasks ls:\n%s", id, got, status, out)
	}
}

// Many short-lived containers in a row all succeed (the issue asks for 40; we run 50), while `ctr tasks ls` polls
// their state, and leave nothing behind: no container, no task, no shim of this daemon, no runc state, no mount.
func TestManyShortLived(t *testing.T) {
	const n = 50
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		// Meanwhile `ctr tasks ls` asks the shims for the State of every task, whatever state it is in (a shim must
		// answer State while a Create or Delete of the same container is in flight).
		stop := make(chan struct{})
		defer close(stop)
		var calls atomic.Int64
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					c.CtrWith(harness.CtrOpts{Timeout: 10 * time.Second}, "tasks", "ls")
					calls.Add(1)
				}
			}
		}()
		var total, worst time.Duration
		ids := map[string]bool{}
		for i := 0; i < n; i++ {
			id := c.ID("true")
			if ids[id] {
				t.Fatalf("id %s used twice", id)
			}
			ids[id] = true
			r := c.CtrWith(harness.CtrOpts{Timeout: 30 * time.Second}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "/bin/true")
			if r.Code != 0 {
				t.Fatalf("run %d of %d: %v", i+1, n, r)
			}
			total += r.Took
			worst = max(worst, r.Took)
		}
		t.Logf("%d x ctr run --rm /bin/true: mean %v, worst %v (%d concurrent ctr tasks ls)", n, (total / n).Round(time.Millisecond),
			worst.Round(time.Millisecond), calls.Load())
		for id := range ids {
			c.CheckGone(t, id, id)
		}
		harness.Eventually(t, 10*time.Second, "no shim process of this containerd", func() bool {
			return len(c.ShimProcesses(c.Runtime, "")) == 0
		})
		if ents, _ := filepath.Glob(c.Bundle("*")); len(ents) != 0 {
			t.Errorf("bundles left: %v", ents)
		}
	})
}
