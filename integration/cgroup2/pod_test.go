//go:build cgroup2vm

package cgroup2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A pod's containers under one cgroup parent (as CRI asks: the pod's cgroup or slice) are served by one shim; an
// OOM kill in one is reported for that one only, and the other runs on with its own stats.
func testPodParent(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	pod := e.c.ID("pod")
	parent := "podv2test-" + pod // cgroupfs: a cgroup under the root
	if e.systemd() {
		parent = "podv2test-" + strings.ReplaceAll(pod, "-", "") + ".slice" // a dash would nest the slice further
	}
	a := e.create(ctx, t, r, spec{id: e.c.ID("poda"), args: []string{"sleep", "1000"}, parent: parent, pod: pod})
	a.start(ctx, t)
	b := e.create(ctx, t, r, spec{
		id: e.c.ID("podb"), args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"},
		parent: parent, pod: pod, memLimit: 32 << 20,
	})
	shimsA, shimsB := e.c.ShimProcesses(e.c.Runtime, a.s.id), e.c.ShimProcesses(e.c.Runtime, b.s.id)
	if len(shimsA) != 1 || len(shimsB) != 0 {
		t.Fatalf("shims started for %s: %v, for %s: %v; want one shim for the pod", a.s.id, shimsA, b.s.id, shimsB)
	}
	parentDir := filepath.Dir(a.cgroup)
	if filepath.Dir(b.cgroup) != parentDir {
		t.Fatalf("cgroups %s and %s have different parents", a.cgroup, b.cgroup)
	}
	r.checked("one shim (pid %d) for %s and %s, both under %s", shimsA[0].PID, a.s.id, b.s.id, parentDir)

	b.start(ctx, t)
	if code := b.waitExit(t); code != 137 {
		t.Errorf("exit status of %s: %d, want 137", b.s.id, code)
	}
	topics := b.eventsUntilExit(t)
	if !strings.Contains(strings.Join(topics, " "), "/tasks/oom /tasks/exit") {
		t.Errorf("events of %s: %v, want /tasks/oom then /tasks/exit", b.s.id, topics)
	}
	for _, ev := range e.events.Task(a.s.id) {
		if ev.Topic == "/tasks/oom" || ev.Topic == "/tasks/exit" {
			t.Errorf("%s got %s from its pod mate's OOM", a.s.id, ev.Topic)
		}
	}
	if st, err := a.task.Status(ctx); err != nil || st.Status != client.Running {
		t.Fatalf("%s after its pod mate's OOM: %v %v, want running", a.s.id, st.Status, err)
	}
	m := a.metrics(ctx, t)
	if m.GetPids().GetCurrent() != 1 || m.GetMemoryEvents().GetOomKill() != 0 {
		t.Errorf("metrics of %s: pids %d, oom_kill %d; want 1, 0",
			a.s.id, m.GetPids().GetCurrent(), m.GetMemoryEvents().GetOomKill())
	}
	r.checked("OOM in %s: events %s%s; %s untouched (running, pids.current %d, oom_kill %d)",
		b.s.id, strings.Join(topics, " "), oomSource(e, b),
		a.s.id, m.GetPids().GetCurrent(), m.GetMemoryEvents().GetOomKill())
	b.remove(ctx, t, r)
	a.remove(ctx, t, r)
	removeParent(t, e, r, parent, parentDir)
}

// removeParent removes the pod's emptied parent cgroup, or stops its slice.
func removeParent(t *testing.T, e *env, r *report, parent, dir string) {
	t.Helper()
	if e.systemd() {
		if _, err := systemctl("stop", parent); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, waitShort, "slice "+parent+" gone", func() bool { return !exists(dir) })
		r.checked("slice %s stopped and gone", parent)
		return
	}
	if err := os.Remove(dir); err != nil {
		t.Fatalf("remove the pod's cgroup parent: %v", err)
	}
	r.checked("pod cgroup parent %s empty and removed", dir)
}
