package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PodProcessMarker is argv[0] of a sandbox's own process (pod/podproc).
const PodProcessMarker = "containerd-shim-pod-v2:pod"

// PodProcesses lists the sandboxes' own processes on the host.
func PodProcesses() []Process {
	return Processes(func(argv []string) bool { return argv[0] == PodProcessMarker })
}

// PodDir is the state directory our shim keeps for the pod of group key (a sandbox id for a sandbox) in namespace
// ns of this daemon: it is named after the shim's socket.
func (c *Containerd) PodDir(ns, key string) string {
	return PodStateDir(c.Address, ns, key)
}

// SandboxBundle is the bundle containerd made for sandbox id in namespace ns.
func (c *Containerd) SandboxBundle(ns, id string) string {
	return filepath.Join(c.State, "io.containerd.sandbox.controller.v1.shim", ns, id)
}

// SandboxSpec is an OCI spec for `ctr sandboxes run`: a pod with the given hostname, its own network, IPC, UTS and
// PID namespaces (and a user namespace with mappings when given), the sysctls, and cgroup /<daemon namespace>/<id>
// (removed by Stop).
func (c *Containerd) SandboxSpec(t testing.TB, id, hostname string, sysctls map[string]string, userns bool) string {
	t.Helper()
	nss := []map[string]string{{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "pid"}, {"type": "mount"}}
	linux := map[string]any{"sysctl": sysctls, "cgroupsPath": "/" + c.Namespace + "/" + id}
	if userns {
		nss = append(nss, map[string]string{"type": "user"})
		m := []map[string]int{{"containerID": 0, "hostID": 100000, "size": 65536}}
		linux["uidMappings"], linux["gidMappings"] = m, m
	}
	linux["namespaces"] = nss
	spec := map[string]any{"ociVersion": "1.0.2", "hostname": hostname, "linux": linux}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Dir, "sandbox-"+id+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Sandboxes lists the sandboxes containerd has in the daemon's namespace (`ctr sandboxes ls`).
func (c *Containerd) Sandboxes(t testing.TB) []string {
	t.Helper()
	out := c.MustCtr(t, "sandboxes", "ls")
	var ids []string
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// PodProcessesOfNamespace lists the sandboxes' own processes of this daemon (see podProcesses).
func (c *Containerd) PodProcessesOfNamespace() []Process { return c.podProcesses() }

// podProcesses lists the sandboxes' own processes of this daemon: those in a cgroup below /<daemon namespace>, where
// the tests' sandboxes and CRI pods have theirs.
func (c *Containerd) podProcesses() []Process {
	var out []Process
	for _, p := range PodProcesses() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		if err == nil && strings.Contains(string(b), ":/"+c.Namespace+"/") {
			out = append(out, p)
		}
	}
	return out
}
