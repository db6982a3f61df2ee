package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// An Update of the memory limit (ctr has no update command: the Go client sends it) lands in the container's cgroup.
func TestUpdateMemoryLimit(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		cl, ctx := newClient(t, c)
		cc, err := newClientTask(ctx, t, cl, c, containerSpec{id: c.ID("upd"), args: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := cc.task.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		limit := int64(67108864)
		if err := cc.task.Update(ctx, client.WithResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})); err != nil {
			t.Fatalf("Update: %v", err)
		}
		got, err := memoryLimit(int(cc.task.Pid()))
		if err != nil || got != "67108864" {
			t.Fatalf("memory limit after Update: %q %v, want 67108864", got, err)
		}
	})
}

// memoryLimit reads the memory limit of pid's cgroup (v1 or v2).
func memoryLimit(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if strings.Contains(","+f[1]+",", ",memory,") {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes"))
			return strings.TrimSpace(string(b)), err
		}
		if f[1] == "" {
			if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", f[2], "memory.max")); err == nil {
				return strings.TrimSpace(string(b)), nil
			}
		}
	}
	return "", fmt.Errorf("no memory cgroup for pid %d", pid)
}
