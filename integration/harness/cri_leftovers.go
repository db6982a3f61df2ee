package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// PodLeftovers lists what remains of a removed pod and its containers: CRI's and containerd's records, runc state,
// bundles and their mounts, shim processes, and under our runtime the pod's state directory (namespace pins) and
// its shim's socket; the pod's network namespace pin and CNI allocations; once no pod is left, ports on the bridge.
func (c *CRI) PodLeftovers(pod *Pod, containers ...string) []string {
	var left []string
	ids := append([]string{pod.ID}, containers...)
	listed := func(tool string, r *Result) {
		if r.Code != 0 {
			left = append(left, fmt.Sprintf("%s %s failed: %v", tool, strings.Join(r.Args, " "), r))
			return
		}
		for _, id := range ids {
			if containsLine(r.Stdout, id) {
				left = append(left, fmt.Sprintf("%s %s still lists %s", tool, strings.Join(r.Args, " "), id))
			}
		}
	}
	listed("crictl", c.Crictl("pods", "-q"))
	listed("crictl", c.Crictl("ps", "-a", "-q"))
	listed("ctr", c.CtrWith(CtrOpts{Namespace: CRINamespace}, "containers", "ls", "-q"))
	for _, id := range ids {
		bundle := filepath.Join(c.State, "io.containerd.runtime.v2.task", CRINamespace, id)
		if Exists(bundle) {
			left = append(left, "bundle "+bundle)
		}
		for _, m := range MountsUnder(bundle) {
			left = append(left, "mount "+m)
		}
		if d := filepath.Join(RuncRoot, CRINamespace, id); Exists(d) {
			left = append(left, "runc state "+d)
		}
		for _, p := range c.ShimProcesses(c.Runtime, id) {
			left = append(left, fmt.Sprintf("shim process %d %q", p.PID, p.Cmdline))
		}
	}
	if IsOurs(c.Runtime) {
		// CRI's sandbox id names the pod (io.kubernetes.cri.sandbox-id).
		if d := PodStateDir(c.Address, CRINamespace, pod.ID); Exists(d) {
			left = append(left, "pod state "+d)
		}
		for _, m := range MountsUnder(PodStateDir(c.Address, CRINamespace, pod.ID)) {
			left = append(left, "mount "+m)
		}
		for _, p := range c.podProcesses() {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID)); err == nil && strings.Contains(string(b), "/"+pod.ID+"\n") {
				left = append(left, fmt.Sprintf("pod process %d %q", p.PID, p.Cmdline))
			}
		}
		if sock := shimSocketPath(c.Address, CRINamespace, pod.ID); Exists(sock) {
			left = append(left, "shim socket "+sock)
		}
	}
	if pod.NetNS != "" {
		for _, m := range MountsUnder(pod.NetNS) {
			left = append(left, "network namespace pin "+m)
		}
	}
	left = append(left, c.CNI.PodLeftovers(pod.ID)...)
	if r := c.Crictl("pods", "-q"); r.Code == 0 && strings.TrimSpace(r.Stdout) == "" {
		for _, port := range c.CNI.BridgePorts() {
			left = append(left, fmt.Sprintf("interface %s on bridge %s with no pod left", port, c.CNI.Bridge))
		}
	}
	return left
}

// CheckPodGone fails t unless nothing of pod and its containers is left (see PodLeftovers) within 10 s.
func (c *CRI) CheckPodGone(t testing.TB, pod *Pod, containers ...string) {
	t.Helper()
	var left []string
	if !WaitUntil(10*time.Second, func() bool { left = c.PodLeftovers(pod, containers...); return len(left) == 0 }) {
		t.Fatalf("%v left behind:\n  %s", pod, strings.Join(left, "\n  "))
	}
}
