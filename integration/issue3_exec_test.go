package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

func runDetached(t *testing.T, c *harness.Containerd, id string, extra ...string) {
	t.Helper()
	args := append([]string{"run", "-d", "--runtime", c.Runtime}, extra...)
	c.MustCtr(t, append(args, c.Image, id, "sleep", "1000")...)
	t.Cleanup(func() { removeTask(t, c, id) })
}

// Exec output, stdin and exit code; pause and resume; ps with exec ids; metrics; exec in a stopped container
// refused as a failed precondition.
func TestExecBasics(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("ex")
		runDetached(t, c, id)
		if out := c.MustCtr(t, "tasks", "exec", "--exec-id", "echo", id, "echo", "from-exec"); out != "from-exec\n" {
			t.Fatalf("exec output %q", out)
		}
		if r := c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", "five", id, "sh", "-c", "exit 5"); r.Code != 5 {
			t.Fatalf("exec exit code: %v", r)
		}
		// ctr closes the exec's stdin only if its own stdin ends after the exec exists.
		start := time.Now()
		later := func() bool { return time.Since(start) > time.Second }
		r := c.CtrWith(harness.CtrOpts{Stdin: harness.StdinAfter([]byte("through-stdin\n"), later)}, "tasks", "exec", "--exec-id", "in", id, "cat")
		if r.Code != 0 || r.Stdout != "through-stdin\n" {
			t.Fatalf("exec stdin: %v", r)
		}

		c.MustCtr(t, "tasks", "exec", "-d", "--exec-id", "bg", id, "sleep", "1000")
		ps := c.MustCtr(t, "tasks", "ps", id)
		if !strings.Contains(ps, "bg") || !strings.Contains(ps, fmt.Sprint(initPid(t, c, id))) {
			t.Fatalf("ps does not list init and exec bg:\n%s", ps)
		}

		c.MustCtr(t, "tasks", "pause", id)
		if s := taskStatus(c, id); s != "PAUSED" {
			t.Fatalf("after pause: status %s", s)
		}
		c.MustCtr(t, "tasks", "resume", id)
		if s := taskStatus(c, id); s != "RUNNING" {
			t.Fatalf("after resume: status %s", s)
		}
		for _, topic := range []string{"/tasks/paused", "/tasks/resumed"} {
			ev.MustWaitFor(t, 10*time.Second, topic, func(e harness.Event) bool {
				return e.Topic == topic && e.Str("container_id") == id
			})
		}

		if m := c.MustCtr(t, "tasks", "metrics", id); !strings.Contains(m, "memory.usage_in_bytes") && !strings.Contains(m, "memory.usage") {
			t.Fatalf("metrics without memory usage:\n%s", m)
		}
		c.Ctr("tasks", "kill", "-s", "SIGKILL", id)
		harness.Eventually(t, 10*time.Second, "container stops", func() bool { return taskStatus(c, id) == "STOPPED" })
		r = c.CtrWith(harness.CtrOpts{}, "tasks", "exec", "--exec-id", "late", id, "true")
		// containerd 1.6 prints the kind ("failed precondition"), 2.x only the message.
		if r.Code == 0 || !strings.Contains(r.Stderr, "not running") {
			t.Fatalf("exec in a stopped container: want a failed precondition, got %v", r)
		}
	})
}

// ctr run -t and ctr task exec -t get a pty, and exit codes pass through.
func TestTerminals(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ctr := func(args ...string) (string, int) {
			line := fmt.Sprintf("%s --address %s --namespace %s", c.Flavour.Ctr, c.Address, c.Namespace)
			for _, a := range args {
				line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
			}
			cmd := exec.Command("script", "-qec", line, "/dev/null")
			out, _ := cmd.CombinedOutput()
			return string(out), cmd.ProcessState.ExitCode()
		}
		id := c.ID("tty")
		out, code := ctr("run", "--rm", "-t", "--runtime", c.Runtime, c.Image, id, "sh", "-c", "tty; exit 7")
		if code != 7 || !strings.Contains(out, "/dev/pts/") {
			t.Fatalf("ctr run -t: exit %d, output %q", code, out)
		}
		id2 := c.ID("ttyexec")
		runDetached(t, c, id2)
		out, code = ctr("tasks", "exec", "-t", "--exec-id", "t1", id2, "sh", "-c", "tty; exit 6")
		if code != 6 || !strings.Contains(out, "/dev/pts/") {
			t.Fatalf("ctr task exec -t: exit %d, output %q", code, out)
		}
	})
}

// 50 concurrent execs each print their own output.
func TestConcurrentExecs(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("many")
		runDetached(t, c, id)
		var wg sync.WaitGroup
		errs := make(chan string, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r := c.CtrWith(harness.CtrOpts{Timeout: 2 * time.Minute}, "tasks", "exec", "--exec-id", fmt.Sprintf("c%d", i), id, "echo", fmt.Sprintf("out-%d", i))
				if r.Code != 0 || r.Stdout != fmt.Sprintf("out-%d\n", i) {
					errs <- r.String()
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})
}

// With 10 execs running, killing init publishes 11 exits, init's last; an OOM comes before the exit it caused;
// kill --all stops a container with background children.
func TestExitOrderOOMAndKillAll(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("eleven")
		runDetached(t, c, id)
		for i := 0; i < 10; i++ {
			c.MustCtr(t, "tasks", "exec", "-d", "--exec-id", fmt.Sprintf("e%d", i), id, "sleep", "1000")
		}
		c.MustCtr(t, "tasks", "kill", "-s", "SIGKILL", id)
		ev.MustWaitFor(t, 20*time.Second, "init exit", func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == id && e.Str("id") == id
		})
		time.Sleep(300 * time.Millisecond)
		var ids []string
		for _, e := range ev.All() {
			if e.Topic == "/tasks/exit" && e.Str("container_id") == id {
				ids = append(ids, e.Str("id"))
			}
		}
		if len(ids) != 11 || ids[10] != id {
			t.Fatalf("want 11 exits with init's last, got %v", ids)
		}
		seen := map[string]bool{}
		for _, x := range ids {
			if seen[x] {
				t.Fatalf("exit of %s published twice: %v", x, ids)
			}
			seen[x] = true
		}

		oom := c.ID("oom")
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--null-io", "--memory-limit", "33554432", "--runtime", c.Runtime, c.Image, oom,
			"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
		if r.Code != 137 {
			t.Fatalf("over its memory limit: want exit 137, got %v", r)
		}
		ev.MustWaitFor(t, 10*time.Second, "oom exit", func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == oom
		})
		var topics []string
		for _, e := range ev.All() {
			if e.Str("container_id") == oom && (e.Topic == "/tasks/oom" || e.Topic == "/tasks/exit") {
				topics = append(topics, e.Topic)
			}
		}
		if len(topics) < 2 || topics[0] != "/tasks/oom" || topics[len(topics)-1] != "/tasks/exit" {
			t.Fatalf("want /tasks/oom before /tasks/exit, got %v", topics)
		}

		ka := c.ID("killall")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, c.Image, ka, "sh", "-c", "sleep 1001 & sleep 1002 & wait")
		t.Cleanup(func() { removeTask(t, c, ka) })
		harness.Eventually(t, 10*time.Second, "children started", func() bool {
			return len(harness.ProcessesWithArg("1002")) > 0
		})
		c.MustCtr(t, "tasks", "kill", "-a", "-s", "SIGKILL", ka)
		harness.Eventually(t, 10*time.Second, "kill -a stops everything", func() bool {
			return taskStatus(c, ka) == "STOPPED" && len(harness.ProcessesWithArg("1001")) == 0 && len(harness.ProcessesWithArg("1002")) == 0
		})
	})
}

// Regression for exit bookkeeping under load (containerd issues 10589, 9719, 8557): hundreds of execs started while
// init exits. Every exec that started gets exactly one exit, init's exit is last, nothing hangs.
func TestExecStormWhileInitExits(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		ev := c.Events(t)
		id := c.ID("storm")
		c.MustCtr(t, "run", "-d", "--runtime", c.Runtime, c.Image, id, "sleep", "3")
		t.Cleanup(func() { removeTask(t, c, id) })
		var wg sync.WaitGroup
		sem := make(chan struct{}, 25)
		for i := 0; i < 200; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				cmd := []string{"true"}
				if i%3 == 0 {
					cmd = []string{"sleep", "0.2"}
				}
				c.CtrWith(harness.CtrOpts{Timeout: time.Minute}, append([]string{"tasks", "exec", "--exec-id", fmt.Sprintf("s%d", i), id}, cmd...)...)
			}(i)
		}
		wg.Wait()
		harness.Eventually(t, 30*time.Second, "init exits", func() bool { return taskStatus(c, id) == "STOPPED" })
		ev.MustWaitFor(t, 20*time.Second, "init exit", func(e harness.Event) bool {
			return e.Topic == "/tasks/exit" && e.Str("container_id") == id && e.Str("id") == id
		})
		time.Sleep(500 * time.Millisecond)
		started, exits := map[string]int{}, map[string]int{}
		var order []string
		for _, e := range ev.All() {
			if e.Str("container_id") != id {
				continue
			}
			switch e.Topic {
			case "/tasks/exec-started":
				started[e.Str("exec_id")]++
			case "/tasks/exit":
				exits[e.Str("id")]++
				order = append(order, e.Str("id"))
			}
		}
		for x, n := range started {
			if n != 1 || exits[x] != 1 {
				t.Errorf("exec %s: started %d times, exited %d times", x, n, exits[x])
			}
		}
		if exits[id] != 1 || order[len(order)-1] != id {
			t.Fatalf("init exit: %d times, last exit %s", exits[id], order[len(order)-1])
		}
		t.Logf("%d execs started, %d exits, init last", len(started), len(order))
	})
}

// Checkpoint goes through runc and criu: either it works, or ctr gets criu's own error and the container runs on.
func TestCheckpointKeepsContainer(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/criu"); err != nil {
		t.Fatal("criu is not installed: run scripts/deps.sh")
	}
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		id := c.ID("ckpt")
		runDetached(t, c, id)
		r := c.CtrWith(harness.CtrOpts{Timeout: 2 * time.Minute}, "tasks", "checkpoint", id)
		if r.Code != 0 && !strings.Contains(strings.ToLower(r.Stderr), "criu") {
			t.Fatalf("checkpoint failed without criu's words: %v", r)
		}
		t.Logf("checkpoint: exit %d %s", r.Code, strings.TrimSpace(r.Stderr))
		if s := taskStatus(c, id); s != "RUNNING" {
			t.Fatalf("after checkpoint: status %s", s)
		}
		c.MustCtr(t, "tasks", "exec", "--exec-id", "after", id, "true")
	})
}
