package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// The shim's log reaches containerd's for as long as the pod lives: containerd reads a container's log fifo only
// while that container exists, so when the container whose fifo the shim writes to is deleted, the shim's lines
// (here: the per-request debug lines) must come through another container's.
func TestShimLogFollowsThePod(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		pod := c.ID("logpod")
		group := harness.GroupAnnotation(c.Runtime) + "=" + pod
		a, b := c.ID("first"), c.ID("second")
		for _, id := range []string{a, b} {
			c.MustCtr(t, "run", "-d", "--annotation", group, "--runtime", c.Runtime, c.Image, id, "sleep", "1000")
			t.Cleanup(func() { removeTask(t, c, id) })
		}
		execLines := func() int { return len(c.LogLines("Task/Exec took=")) }
		if !harness.IsOurs(c.Runtime) {
			return // the reference shim logs no request lines
		}
		c.MustCtr(t, "tasks", "exec", "--exec-id", "before", b, "true")
		harness.Eventually(t, 5*time.Second, "the shim's request line reaches containerd's log", func() bool { return execLines() >= 1 })

		// a started the shim: its fifo carried the log so far. It goes; the pod stays.
		removeTask(t, c, a)
		before := execLines()
		c.MustCtr(t, "tasks", "exec", "--exec-id", "after", b, "true")
		harness.Eventually(t, 5*time.Second, "the shim's lines still reach containerd after the first container is gone", func() bool {
			return execLines() > before
		})
		if lines := c.LogLines("move the shim's log"); len(lines) > 0 {
			t.Errorf("the shim could not move its log: %s", strings.Join(lines, "\n"))
		}
	})
}
