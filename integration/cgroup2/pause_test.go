//go:build cgroup2vm

package cgroup2

import (
	"testing"

	"github.com/containerd/containerd/v2/client"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Pause freezes the container's cgroup (cgroup.freeze 1, cgroup.events frozen 1) and Resume thaws it, each with
// its event.
func testPauseResume(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	ct := e.create(ctx, t, r, spec{id: e.c.ID("pause"), args: []string{"sleep", "1000"}})
	ct.start(ctx, t)
	for _, step := range []struct {
		name   string
		call   func() error
		status client.ProcessStatus
		freeze string
		frozen uint64
		topic  string
	}{
		{"Pause", func() error { return ct.task.Pause(ctx) }, client.Paused, "1", 1, "/tasks/paused"},
		{"Resume", func() error { return ct.task.Resume(ctx) }, client.Running, "0", 0, "/tasks/resumed"},
	} {
		if err := step.call(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if st, err := ct.task.Status(ctx); err != nil || st.Status != step.status {
			t.Fatalf("status after %s: %v %v, want %s", step.name, st.Status, err, step.status)
		}
		freeze, err := cgroupFile(ct.cgroup, "cgroup.freeze")
		if err != nil || freeze != step.freeze {
			t.Fatalf("cgroup.freeze after %s: %q %v, want %s", step.name, freeze, err, step.freeze)
		}
		harness.Eventually(t, waitShort, "cgroup.events frozen after "+step.name, func() bool {
			n, err := cgroupKey(ct.cgroup, "cgroup.events", "frozen")
			return err == nil && n == step.frozen
		})
		ct.e.events.MustWaitFor(t, waitShort, step.topic+" of "+ct.s.id, func(ev harness.Event) bool {
			return ev.Topic == step.topic && ev.Str("container_id") == ct.s.id
		})
		r.checked("%s: status %s, cgroup.freeze %s, cgroup.events frozen %d, event %s",
			step.name, step.status, freeze, step.frozen, step.topic)
	}
	ct.remove(ctx, t, r)
}
