//go:build cgroup2vm

package cgroup2

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A pod as containerd's sandbox (2.x, sandboxer "shim") under a cgroup parent, as CRI gives one: with the cgroupfs
// driver a cgroup path that does not exist yet (the shim makes it), with the systemd driver the name of a nested
// slice that kubelet has made through systemd with a CPU weight, memory and tasks accounting. The pod's process is in a leaf of
// the pod's cgroup, SandboxMetrics reads the pod's cgroup, UpdateSandbox writes its limits (pod resources plus
// overhead), and removing the sandbox removes the cgroups the shim made and nothing else.
func testSandbox(t *testing.T, e *env, r *report) {
	ctx := e.ctx(t)
	id := e.c.ID("sb")
	parent, parentDir := "/"+e.c.Namespace+"/"+id, filepath.Join(cgroupRoot, e.c.Namespace, id)
	if e.systemd() {
		slice := "podv2test-sb" + strings.ReplaceAll(id, "-", "") + ".slice"
		parent, parentDir = slice, filepath.Join(cgroupRoot, "podv2test.slice", slice)
		startSlice(t, slice)
	}
	specPath := e.c.SandboxSpec(t, id, id, nil, false)
	setCgroupsPath(t, specPath, parent)
	e.c.MustCtr(t, "sandboxes", "run", "--runtime", e.c.Runtime, specPath, id)
	ctrl := e.cl.SandboxController("shim")
	st, err := ctrl.Status(ctx, id, false)
	if err != nil || st.State != "SANDBOX_READY" || st.Pid == 0 {
		t.Fatalf("status of sandbox %s: %+v, %v; want SANDBOX_READY with a pid", id, st, err)
	}
	pid := int(st.Pid)
	leaf := filepath.Join(parentDir, id)
	if got, err := cgroupOf(pid); err != nil || got != leaf {
		t.Fatalf("cgroup of the pod's process %d: %q, %v; want %s", pid, got, err, leaf)
	}
	if e.c.LogContains("cannot be born in its cgroup") {
		t.Errorf("the pod's process was moved into its cgroup, not born in it (clone3's CLONE_INTO_CGROUP)")
	}
	r.checked("pod process %d born in %s", pid, strings.TrimPrefix(leaf, cgroupRoot))

	m, err := ctrl.Metrics(ctx, id)
	if err != nil {
		t.Fatalf("SandboxMetrics %s: %v", id, err)
	}
	if u := m.GetData().GetTypeUrl(); !strings.HasSuffix(u, "io.containerd.cgroups.v2.Metrics") {
		t.Fatalf("SandboxMetrics %s: type %q, want io.containerd.cgroups.v2.Metrics", id, u)
	}
	var stats v2stats.Metrics
	if err := proto.Unmarshal(m.GetData().GetValue(), &stats); err != nil {
		t.Fatalf("SandboxMetrics %s: %v", id, err)
	}
	current, err := cgroupFile(parentDir, "pids.current")
	if err != nil {
		t.Fatal(err)
	}
	if strconv.FormatUint(stats.GetPids().GetCurrent(), 10) != current || stats.GetPids().GetCurrent() == 0 {
		t.Errorf("SandboxMetrics pids.current %d, the pod cgroup's pids.current %s", stats.GetPids().GetCurrent(), current)
	}
	if stats.GetMemory().GetUsage() == 0 {
		t.Errorf("SandboxMetrics memory usage 0 with the pod's process in its cgroup")
	}
	r.checked("SandboxMetrics: cgroup v2 metrics of the pod cgroup (pids.current %d, memory usage %d)",
		stats.GetPids().GetCurrent(), stats.GetMemory().GetUsage())

	// What CRI's UpdatePodSandboxResources hands the sandbox (containerd 2.4).
	resources := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000}
	overhead := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, CpuShares: 2}
	value, err := json.Marshal(struct {
		Overhead, Resources *runtimeapi.LinuxContainerResources
	}{overhead, resources})
	if err != nil {
		t.Fatal(err)
	}
	const key = "updated-resources"
	ext := map[string]typeurl.Any{key: &anypb.Any{TypeUrl: "io.containerd.cri.v1/UpdatedResources", Value: value}}
	// containerd 2.4's client drops the sandboxer's name from an update (its remote controller does not send it, and
	// the daemon refuses the request): containerd's controller service is called as the client would.
	conn, ok := e.cl.Conn().(*grpc.ClientConn)
	if !ok {
		t.Fatalf("containerd client's connection is a %T, not gRPC's", e.cl.Conn())
	}
	_, err = sandboxapi.NewControllerClient(conn).Update(ctx, &sandboxapi.ControllerUpdateRequest{
		SandboxID: id,
		Sandboxer: "shim",
		Sandbox:   sandbox.ToProto(&sandbox.Sandbox{ID: id, Sandboxer: "shim", Extensions: ext}),
		Fields:    []string{"extensions." + key},
	})
	if err != nil {
		t.Fatalf("UpdateSandbox %s: %v", id, err)
	}
	shares := uint64(512 + 2)
	for file, want := range map[string]string{
		"memory.max": strconv.Itoa(65 << 20),
		"cpu.max":    "50000 100000",
		"cpu.weight": strconv.FormatUint(1+((shares-2)*9999)/262142, 10), // runc's conversion of CPU shares
	} {
		if got, err := cgroupFile(parentDir, file); err != nil || got != want {
			t.Errorf("%s of the pod cgroup after UpdateSandbox: %q, %v; want %s", file, got, err, want)
		}
	}
	r.checked("UpdateSandbox: resources plus overhead in the pod cgroup's memory.max, cpu.max, cpu.weight")

	rm := e.c.CtrWith(harness.CtrOpts{}, "sandboxes", "rm", id)
	if rm.Code != 0 || strings.Contains(rm.Stderr, "level=error") {
		t.Fatalf("ctr sandboxes rm %s: %v", id, rm)
	}
	harness.Eventually(t, waitShort, "the pod's process and its cgroup gone", func() bool {
		return !harness.ProcessAlive(pid) && !exists(leaf)
	})
	if e.systemd() {
		if !exists(parentDir) {
			t.Fatalf("kubelet's slice %s removed with the sandbox", parentDir)
		}
		r.checked("sandbox removed: pod process %d ended, its cgroup removed, kubelet's slice left", pid)
		removeParent(t, e, r, parent, parentDir)
		return
	}
	harness.Eventually(t, waitShort, "the pod's cgroup gone", func() bool { return !exists(parentDir) })
	r.checked("sandbox removed: pod process %d ended, %s removed", pid, strings.TrimPrefix(parentDir, cgroupRoot))
}

// startSlice makes and starts a slice as kubelet makes a pod's: through systemd, with a CPU weight and memory and
// tasks accounting, for which systemd enables the cpu, memory and pids controllers down to it (CPU accounting alone
// needs no controller on cgroup v2). It is stopped and forgotten when t ends.
func startSlice(t *testing.T, slice string) {
	t.Helper()
	unit := filepath.Join("/run/systemd/system", slice)
	if err := os.WriteFile(unit, []byte("[Slice]\nCPUWeight=100\nMemoryAccounting=yes\nTasksAccounting=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = systemctl("stop", slice)
		_ = os.Remove(unit)
		_, _ = systemctl("daemon-reload")
	})
	if _, err := systemctl("daemon-reload"); err != nil {
		t.Fatal(err)
	}
	if _, err := systemctl("start", slice); err != nil {
		t.Fatal(err)
	}
}

// setCgroupsPath sets linux.cgroupsPath in the sandbox spec file at path.
func setCgroupsPath(t *testing.T, path, cgroupsPath string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	linux, ok := spec["linux"].(map[string]any)
	if !ok {
		t.Fatalf("sandbox spec %s has no linux object", path)
	}
	linux["cgroupsPath"] = cgroupsPath
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(fmt.Errorf("write sandbox spec: %w", err))
	}
}
