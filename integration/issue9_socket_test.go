package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A container of the reference runtime grouped by io.containerd.runc.v2.group=G and one of ours with the same
// annotation in the same namespace are two pods of two runtimes: each is served by its own runtime's shim, on its own
// socket, whichever starts first. (With the reference's socket formula, the second `start` found the first one's
// shim alive and handed containerd its address.)
func TestRuncGroupAndPodWithTheSameGroupGetTheirOwnShims(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("this test runs both runtimes side by side: run it with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		for _, runcFirst := range []bool{true, false} {
			group := c.ID("g")
			theirs, ours := c.ID("runc"), c.ID("pod")
			// Run after the tasks' removal (cleanups run last first): containerd-shim-runc-v2 leaves the socket of
			// a group it served once it exits (ours removes its own, which the harness checks).
			t.Cleanup(func() {
				harness.WaitUntil(10*time.Second, func() bool { return len(c.ShimProcesses(harness.RuntimeRunc, theirs)) == 0 })
				// 2.x's also listens on <group>/debug when containerd logs at debug level.
				for _, key := range []string{group, group + "/debug"} {
					if sock := strings.TrimPrefix(c.ShimSocketAddressOf(harness.RuntimeRunc, key), "unix://"); harness.Exists(sock) {
						t.Logf("removing %s, left by containerd-shim-runc-v2 for %s", sock, key)
						os.Remove(sock)
					}
				}
			})
			run := func(runtime, id string) {
				c.MustCtr(t, "run", "-d", "--runtime", runtime, "--annotation", harness.RuncGroupAnnotation+"="+group,
					c.Image, id, "sleep", "1000")
				t.Cleanup(func() { removeTask(t, c, id) })
			}
			if runcFirst {
				run(harness.RuntimeRunc, theirs)
				run(harness.RuntimePod, ours)
			} else {
				run(harness.RuntimePod, ours)
				run(harness.RuntimeRunc, theirs)
			}
			if p := c.ShimProcesses(harness.RuntimeRunc, theirs); len(p) != 1 {
				t.Errorf("runc first %v: the runc.v2 container %s is not served by containerd-shim-runc-v2 (shims started for it: %v)", runcFirst, theirs, p)
			}
			if p := c.ShimProcesses(harness.RuntimePod, ours); len(p) != 1 {
				t.Errorf("runc first %v: our container %s is not served by %s (shims started for it: %v)", runcFirst, ours, harness.ShimName, p)
			}
			// Where containerd connects for id: the bundle's address file (1.6, and our shim everywhere) or
			// bootstrap.json (2.x with its own runc shim).
			addr := func(id string) string {
				if b, err := os.ReadFile(filepath.Join(c.Bundle(id), "address")); err == nil {
					return strings.TrimSpace(string(b))
				}
				b, err := os.ReadFile(filepath.Join(c.Bundle(id), "bootstrap.json"))
				if err != nil {
					t.Fatalf("neither address nor bootstrap.json in the bundle of %s: %v", id, err)
				}
				var boot struct {
					Address string `json:"address"`
				}
				if err := json.Unmarshal(b, &boot); err != nil {
					t.Fatalf("bootstrap.json of %s: %v", id, err)
				}
				return boot.Address
			}
			if a, b := addr(theirs), addr(ours); a == b {
				t.Errorf("runc first %v: both containers were handed the shim at %s", runcFirst, a)
			}
			if a, want := addr(ours), c.ShimSocketAddressOf(harness.RuntimePod, group); a != want {
				t.Errorf("runc first %v: our container's shim is at %s, want %s", runcFirst, a, want)
			}
			// Each answers through its own shim.
			for _, id := range []string{theirs, ours} {
				if out := c.MustCtr(t, "tasks", "exec", "--exec-id", "x", id, "echo", "ok"); strings.TrimSpace(out) != "ok" {
					t.Errorf("exec in %s: %q", id, out)
				}
			}
		}
	})
}
