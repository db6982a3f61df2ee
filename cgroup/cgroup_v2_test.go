package cgroup

import (
	"context"
	"fmt"
	"github.com/moby/sys/mountinfo"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"golang.org/x/sys/unix"
)

// requireUnified skips unless the test can make cgroups in a cgroup2
// hierarchy: /sys/fs/cgroup itself, or /sys/fs/cgroup/unified on a hybrid
// machine. It returns the hierarchy's directory relative to /sys/fs/cgroup.
func requireUnified(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat(busyboxPath); err != nil {
		t.Skip(err)
	}
	for _, rel := range []string{"", "unified"} {
		var st unix.Statfs_t
		if unix.Statfs(filepath.Join(cgroupRoot, rel), &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return rel
		}
	}
	t.Skip("no cgroup2 hierarchy")
	return ""
}

// loadUnified loads pid's cgroup as v2 even on a hybrid machine, where
// Load rightly takes the v1 controllers.
func loadUnified(t *testing.T, pid int) *Cgroup {
	t.Helper()
	proc, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadCgroup(pid, string(proc), mounts, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cgroupControllers(t *testing.T, dir string) []string {
	t.Helper()
	s, err := readCgroupFile(dir, "cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(s)
}

// TestCgroupV2UnifiedReal reads a real unified cgroup, and runs the shared
// inotify watch on the kernel's own files: memory.events needs the memory
// controller, which a hybrid machine keeps in v1, so the watch counts the
// rises of cgroup.events' "populated" instead, and must stop when the
// cgroup is removed.
func TestCgroupV2UnifiedReal(t *testing.T) {
	rel := requireUnified(t)
	dir := newTestCgroup(t, rel)[rel]

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rises atomic.Int32
	w, err := watchCounter(ctx, dir, "cgroup.events", "populated", func() { rises.Add(1) }, func(oomWatch) {})
	if err != nil {
		t.Fatal(err)
	}

	p := startHeld(t, busyboxPath, "sleep", "100")
	p.join(t, dir)
	p.release(t)
	waitCalls(t, &rises, 1)

	c := loadUnified(t, p.pid)
	if c.Version() != 2 || c.unified != dir {
		t.Fatalf("version %d dir %q, want 2 %q", c.Version(), c.unified, dir)
	}
	msg, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	m := msg.(*v2stats.Metrics)
	if m.CPU == nil { // cpu.stat is always there
		t.Errorf("no cpu stats: %v", m)
	}
	ctrls := cgroupControllers(t, dir)
	if slices.Contains(ctrls, "memory") != (m.Memory != nil) || slices.Contains(ctrls, "pids") != (m.Pids != nil) {
		t.Errorf("controllers %v, metrics %v", ctrls, m)
	}
	t.Logf("controllers %v; cpu %v", ctrls, m.CPU)

	if err := unix.Kill(p.pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.status <- <-p.status // reaped; put the status back for the cleanup
	time.Sleep(50 * time.Millisecond)
	waitCalls(t, &rises, 1) // populated 1 -> 0 is no rise

	removeTestCgroup(t, dir)
	select {
	case <-w.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after the cgroup was removed")
	}
}

// TestOOMV2Real needs the memory controller in a cgroup2 hierarchy: a
// unified machine, not this project's hybrid test machines.
func TestOOMV2Real(t *testing.T) {
	rel := requireUnified(t)
	dir := newTestCgroup(t, rel)[rel]
	if !slices.Contains(cgroupControllers(t, dir), "memory") {
		t.Skip("the memory controller is not available in the cgroup2 hierarchy")
	}
	if err := writeCgroupFile(filepath.Join(dir, "memory.max"), "8388608"); err != nil {
		t.Fatal(err)
	}
	if cgroupPathExists(filepath.Join(dir, "memory.swap.max")) {
		if err := writeCgroupFile(filepath.Join(dir, "memory.swap.max"), "0"); err != nil {
			t.Fatal(err)
		}
	}
	p := startHeld(t, busyboxPath, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	p.join(t, dir)
	c := loadUnified(t, p.pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ooms atomic.Int32
	if err := c.WatchOOM(ctx, func() { ooms.Add(1) }); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	w := c.oom
	c.mu.Unlock()
	p.release(t)
	waitCalls(t, &ooms, 1)
	status := <-p.status
	p.status <- status
	if status != 137 {
		t.Errorf("exit status %d, want 137", status)
	}
	removeTestCgroup(t, dir)
	select {
	case <-w.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after the cgroup was removed")
	}
}

// A pod's cgroup made by the shim where nothing was (the two levels of
// /podv2-test-X/pod, then the leaf for the pod's process) can be limited and
// measured on cgroup v2: each parent enables its controllers for the
// directory made under it. Without that the pod's cgroup had no memory.max,
// cpu.max or pids.current, and an update failed.
func TestPodCgroupV2Real(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skip("/sys/fs/cgroup is not cgroup v2")
	}
	_, pod, leaf, podMade, leafMade := makeTestPod(t)
	t.Cleanup(func() {
		removeTestCgroup(t, leaf.unified)
		removeTestCgroup(t, pod.unified)
		removeTestCgroup(t, filepath.Dir(pod.unified))
	})
	p := startHeld(t, "sleep", "1000")
	if err := leaf.AddProc(p.pid); err != nil {
		t.Fatal(err)
	}
	if err := pod.Update(Resources{MemoryLimit: 64 << 20, CPUShares: 512, CPUPeriod: 50000, CPUQuota: 25000}); err != nil {
		t.Fatalf("update the pod's cgroup: %v", err)
	}
	for file, want := range map[string]string{
		"memory.max": fmt.Sprint(64 << 20),
		"cpu.max":    "25000 50000",
	} {
		if got, err := os.ReadFile(filepath.Join(pod.unified, file)); err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s = %q, %v; want %s", file, got, err, want)
		}
	}
	m, err := pod.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v2 := m.(*v2stats.Metrics); v2.GetPids().GetCurrent() != 1 || v2.GetMemory().GetUsageLimit() != 64<<20 {
		t.Errorf("pod metrics: pids.current %d, memory limit %d; want 1, %d", v2.GetPids().GetCurrent(), v2.GetMemory().GetUsageLimit(), 64<<20)
	}
	// Removal needs the cgroups empty: the process goes back to the root.
	if err := os.WriteFile(filepath.Join(cgroupRoot, "cgroup.procs"), []byte(fmt.Sprint(p.pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := RemoveDirs(leafMade); err != nil {
		t.Fatal(err)
	}
	if err := RemoveDirs(podMade); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(pod.unified)); !os.IsNotExist(err) {
		t.Errorf("%s left: %v", filepath.Dir(pod.unified), err)
	}
}
