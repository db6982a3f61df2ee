//go:build cgroup2vm

package cgroup2

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A container over its memory limit is killed by the kernel (memory.events oom_kill), and containerd gets
// /tasks/oom before the /tasks/exit it caused. Three containers in turn: with systemd the scope's cgroup goes as
// soon as the killed init exits, and whether the shim read the kill before that is a race it must not lose.
func testOOM(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	for round := 1; round <= 3; round++ {
		ct := e.create(ctx, t, r, spec{
			id:       e.c.ID("oom"),
			args:     []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"},
			memLimit: 32 << 20,
		})
		ct.start(ctx, t)
		if code := ct.waitExit(t); code != 137 {
			t.Errorf("exit status %d, want 137 (SIGKILL by the OOM killer); output %q", code, ct.stdout.String())
		}
		kills := oomKills(t, e, ct)
		topics := ct.eventsUntilExit(t)
		if i, j := slices.Index(topics, "/tasks/oom"), slices.Index(topics, "/tasks/exit"); i < 0 || i > j {
			t.Errorf("events of %s: %v, want /tasks/oom before /tasks/exit", ct.s.id, topics)
		}
		r.checked("%s: dd of 64 MiB under memory.max 32 MiB, exit 137, memory.events oom_kill %s, events %s%s",
			ct.s.id, kills, strings.Join(topics, " "), oomSource(e, ct))
		ct.remove(ctx, t, r)
	}
}

// oomKills reads the exited container's oom_kill counter, which must be 1. With systemd the scope's cgroup may be
// gone already: systemd removes a scope once it is empty.
func oomKills(t *testing.T, e *env, ct *ctask) string {
	t.Helper()
	n, err := cgroupKey(ct.cgroup, "memory.events", "oom_kill")
	switch {
	case err != nil && e.systemd() && !exists(ct.cgroup):
		return "not read (systemd removed the emptied scope at once)"
	case err != nil:
		t.Errorf("memory.events of %s: %v", ct.s.id, err)
		return err.Error()
	case n != 1:
		t.Errorf("memory.events oom_kill %d, want 1", n)
	}
	return fmt.Sprint(n)
}

// oomSource says where the shim found the kill, when it says so in its log: the parent's counter, because the
// container's cgroup was gone before the shim read its own.
func oomSource(e *env, ct *ctask) string {
	for _, l := range e.c.LogLines("cgroup=" + ct.cgroup) {
		if strings.Contains(l, "counted from the parent cgroup") {
			return " (the shim counted it from the parent's memory.events: the scope was gone)"
		}
	}
	return ""
}

// eventsUntilExit waits for the task's /tasks/exit and returns the topics of its events so far.
func (ct *ctask) eventsUntilExit(t *testing.T) []string {
	t.Helper()
	ct.e.events.MustWaitFor(t, waitShort, "/tasks/exit of "+ct.s.id, func(ev harness.Event) bool {
		return ev.Topic == "/tasks/exit" && ev.Str("container_id") == ct.s.id
	})
	return harness.Topics(ct.e.events.Task(ct.s.id))
}
