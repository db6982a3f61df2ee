//go:build cgroup2vm

package cgroup2

import (
	"os"
	"slices"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// The runtime option ShimCgroup puts the shim process in that cgroup (the containers keep their own), and the
// shim leaves it when its last container goes.
func testShimCgroup(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	id := e.c.ID("shimcg")
	dir := mustMkdirCgroup(t, "podv2test-shim-"+id)
	ct := e.create(ctx, t, r, spec{id: id, args: []string{"sleep", "1000"}, shimCgroup: "/podv2test-shim-" + id})
	ct.start(ctx, t)
	shims := e.c.ShimProcesses(e.c.Runtime, id)
	if len(shims) != 1 {
		t.Fatalf("shim processes of %s: %v, want one", id, shims)
	}
	shim := shims[0].PID
	got, err := cgroupOf(shim)
	if err != nil || got != dir {
		t.Fatalf("shim %d is in cgroup %q (%v), want %s", shim, got, err, dir)
	}
	procs, err := cgroupProcs(dir)
	if err != nil || !slices.Contains(procs, shim) {
		t.Fatalf("cgroup.procs of %s: %v %v, want the shim %d in it", dir, procs, err, shim)
	}
	if ct.cgroup == dir {
		t.Fatalf("the container shares the shim's cgroup %s", dir)
	}
	r.checked("ShimCgroup: shim %d in %s (cgroup.procs %v), container in %s", shim, dir, procs, ct.cgroup)
	ct.remove(ctx, t, r)
	harness.Eventually(t, waitShort, "the shim gone after its last container", func() bool { return !harness.ProcessAlive(shim) })
	harness.Eventually(t, waitShort, "the shim's cgroup empty", func() bool {
		procs, err := cgroupProcs(dir)
		return err == nil && len(procs) == 0
	})
	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove the shim's cgroup after the shim exited: %v", err)
	}
	r.checked("shim exited, its cgroup %s empty and removed", dir)
}
