//go:build cgroup2vm

package cgroup2

import (
	"strconv"
	"testing"

	"github.com/containerd/containerd/v2/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Stats are io.containerd.cgroups.v2.Metrics with the kernel's values: the pids in cgroup.procs, the memory limit
// in memory.max, memory and CPU used.
func testStats(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	const limit = 256 << 20
	ct := e.create(ctx, t, r, spec{
		id:       e.c.ID("stats"),
		args:     []string{"sh", "-c", "dd if=/dev/zero of=/dev/null bs=1M count=64 2>/dev/null; exec sleep 1000"},
		memLimit: limit,
	})
	ct.start(ctx, t)
	// Until dd is done and sleep is the container's one process.
	harness.Eventually(t, waitShort, "sleep as the container's only process", func() bool {
		pids, err := cgroupProcs(ct.cgroup)
		return err == nil && len(pids) == 1 && harness.ProcessAlive(pids[0]) && cmdline(pids[0]) == "sleep"
	})
	m := ct.metrics(ctx, t)
	pids, err := cgroupProcs(ct.cgroup)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetPids().GetCurrent() != uint64(len(pids)) {
		t.Errorf("pids.current %d, cgroup.procs has %d", m.GetPids().GetCurrent(), len(pids))
	}
	// No limit in the spec; systemd gives every scope one of its own (DefaultTasksMax).
	pidsMax, err := cgroupFile(ct.cgroup, "pids.max")
	if err != nil {
		t.Fatal(err)
	}
	if want := parseMax(pidsMax); m.GetPids().GetLimit() != want {
		t.Errorf("pids limit %d, pids.max %s", m.GetPids().GetLimit(), pidsMax)
	}
	memMax, err := cgroupFile(ct.cgroup, "memory.max")
	if err != nil {
		t.Fatal(err)
	}
	if memMax != strconv.Itoa(limit) || m.GetMemory().GetUsageLimit() != limit {
		t.Errorf("memory.max %s, usage_limit %d, want %d", memMax, m.GetMemory().GetUsageLimit(), limit)
	}
	if m.GetMemory().GetUsage() == 0 || m.GetMemory().GetUsage() > limit {
		t.Errorf("memory usage %d: want more than 0, at most the limit", m.GetMemory().GetUsage())
	}
	if m.GetCPU().GetUsageUsec() == 0 {
		t.Errorf("cpu usage_usec is 0 after dd ran")
	}
	if m.GetMemoryEvents() == nil || m.GetMemoryEvents().GetOomKill() != 0 {
		t.Errorf("memory events %v: want present, with no oom_kill", m.GetMemoryEvents())
	}
	r.checked("metrics io.containerd.cgroups.v2.Metrics: pids.current %d (cgroup.procs %d), pids limit %d (pids.max %s), "+
		"memory usage %d, usage_limit %d (memory.max %s), cpu usage_usec %d, memory events oom_kill %d",
		m.GetPids().GetCurrent(), len(pids), m.GetPids().GetLimit(), pidsMax, m.GetMemory().GetUsage(), m.GetMemory().GetUsageLimit(), memMax,
		m.GetCPU().GetUsageUsec(), m.GetMemoryEvents().GetOomKill())
	ct.remove(ctx, t, r)
}

// An Update of the memory and pids limits lands in memory.max and pids.max, and the metrics say so.
func testUpdate(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	ct := e.create(ctx, t, r, spec{id: e.c.ID("update"), args: []string{"sleep", "1000"}})
	ct.start(ctx, t)
	if v, err := cgroupFile(ct.cgroup, "memory.max"); err != nil || v != "max" {
		t.Fatalf("memory.max before Update: %q %v, want max", v, err)
	}
	limit, pids := int64(64<<20), int64(32)
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
	if err := ct.task.Update(ctx, client.WithResources(res)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	memMax, err := cgroupFile(ct.cgroup, "memory.max")
	if err != nil || memMax != strconv.FormatInt(limit, 10) {
		t.Fatalf("memory.max after Update: %q %v, want %d", memMax, err, limit)
	}
	pidsMax, err := cgroupFile(ct.cgroup, "pids.max")
	if err != nil || pidsMax != strconv.FormatInt(pids, 10) {
		t.Fatalf("pids.max after Update: %q %v, want %d", pidsMax, err, pids)
	}
	m := ct.metrics(ctx, t)
	if m.GetMemory().GetUsageLimit() != uint64(limit) || m.GetPids().GetLimit() != uint64(pids) {
		t.Errorf("metrics after Update: usage_limit %d, pids limit %d; want %d, %d",
			m.GetMemory().GetUsageLimit(), m.GetPids().GetLimit(), limit, pids)
	}
	r.checked("Update: memory.max read back %s (was max), pids.max read back %s; metrics usage_limit %d, pids limit %d",
		memMax, pidsMax, m.GetMemory().GetUsageLimit(), m.GetPids().GetLimit())
	ct.remove(ctx, t, r)
}
