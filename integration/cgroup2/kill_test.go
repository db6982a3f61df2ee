//go:build cgroup2vm

package cgroup2

import (
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/client"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// threeProcs is a container init that starts two more processes and waits; in the host's pid namespace they do
// not die with it.
var threeProcs = []string{"sh", "-c", "sleep 1000 & sleep 1000 & wait"}

// startThree starts a threeProcs container in the host's pid namespace and returns its three pids.
func startThree(t *testing.T, e *env, r *report, name string) (*ctask, []int) {
	t.Helper()
	ctx := e.ctx(t)
	ct := e.create(ctx, t, r, spec{id: e.c.ID(name), args: threeProcs, hostPID: true})
	ct.start(ctx, t)
	var pids []int
	harness.Eventually(t, waitShort, "three processes in the container's cgroup", func() bool {
		var err error
		pids, err = cgroupProcs(ct.cgroup)
		return err == nil && len(pids) == 3
	})
	return ct, pids
}

// Kill with all (ctr kill --all) reaches every process in the container's cgroup, not only init.
func testKillAll(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	ct, pids := startThree(t, e, r, "killall")
	if err := ct.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil {
		t.Fatalf("Kill --all: %v", err)
	}
	if code := ct.waitExit(t); code != 137 {
		t.Errorf("exit status %d, want 137", code)
	}
	checkAllGone(t, ct, pids)
	r.checked("kill --all SIGKILL: all of pids %v (host pid namespace) gone, exit 137, cgroup emptied", pids)
	ct.remove(ctx, t, r)
}

// When init of a container without its own pid namespace exits, the shim kills the processes it left.
func testExitKillsRest(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	ct, pids := startThree(t, e, r, "exitrest")
	if err := ct.task.Kill(ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("Kill init: %v", err)
	}
	if code := ct.waitExit(t); code != 143 {
		t.Errorf("exit status %d, want 143 (SIGTERM)", code)
	}
	checkAllGone(t, ct, pids)
	rest := slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return p == int(ct.task.Pid()) })
	r.checked("SIGTERM to init %d only: exit 143, then its processes %v killed too, cgroup emptied", ct.task.Pid(), rest)
	ct.remove(ctx, t, r)
}

// checkAllGone waits until none of pids lives and the container's cgroup is empty (or gone: systemd removes an
// empty scope).
func checkAllGone(t *testing.T, ct *ctask, pids []int) {
	t.Helper()
	harness.Eventually(t, waitShort, "every process of the container gone", func() bool {
		for _, p := range pids {
			if harness.ProcessAlive(p) {
				return false
			}
		}
		return true
	})
	harness.Eventually(t, waitShort, "the container's cgroup empty", func() bool {
		procs, err := cgroupProcs(ct.cgroup)
		return len(procs) == 0 && (err == nil || !exists(ct.cgroup))
	})
}
