package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// forEachCRI2x runs fn under each selected containerd 2.x with CRI, whose handler `pod` (the README's config) has
// sandboxer = "shim": the shim is the pod's sandbox.
func forEachCRI2x(t *testing.T, env []string, fn func(t *testing.T, c *harness.CRI)) {
	t.Helper()
	harness.CheckRoot(t)
	if !harness.IsOurs(harness.Runtime()) {
		t.Fatalf("sandbox tests drive our runtime only (TEST_RUNTIME=%s)", harness.Runtime())
	}
	ran := false
	for _, f := range harness.Flavours(t) {
		if f.Is16() {
			continue
		}
		ran = true
		t.Run(f.Name, func(t *testing.T) { fn(t, harness.StartCRIWith(t, f, harness.CRIOptions{Env: env})) })
	}
	if !ran {
		t.Fatalf("TEST_CONTAINERD=%q selects no containerd with the sandbox API (2.x)", os.Getenv("TEST_CONTAINERD"))
	}
}

// sandboxPodConfig is a pod config with a cgroup parent of its own (so its metrics are its own), a hostname, DNS and
// sysctls.
func sandboxPodConfig(c *harness.CRI, name string) *runtimeapi.PodSandboxConfig {
	cfg := c.PodConfig(name)
	cfg.Hostname = name + "-host"
	cfg.Linux.CgroupParent = "/" + c.Namespace + "/" + name
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.9.8.7"}, Searches: []string{"svc.test"}, Options: []string{"ndots:3"}}
	cfg.Linux.Sysctls = map[string]string{"kernel.msgmax": "12345", "net.ipv4.tcp_syncookies": "0"}
	return cfg
}

// podPid is the pid of the pod's own process, as CRI reports it.
func podPid(t *testing.T, c *harness.CRI, pod *harness.Pod) int {
	t.Helper()
	pid := c.InspectPod(t, pod.ID).Info.Pid
	if pid <= 0 {
		t.Fatalf("%v has no pid", pod)
	}
	return pid
}

// cgroupFlag is the pod process's last flag, in its command line as a container sees it.
var cgroupFlag = regexp.MustCompile(`^(` + regexp.QuoteMeta(harness.PodProcessMarker) + ` [01]{5})[0-9]`)

var podControllers = regexp.MustCompile(`(^|,)(memory|cpu|cpuacct|pids|blkio|hugetlb)(,|$)`)

// checkInCgroup checks that pid's cgroup is path in the unified hierarchy (cgroup v2) or in each v1 hierarchy of a
// controller the shim manages for a pod (memory, cpu, cpuacct, pids, blkio, hugetlb; as for a pause container's
// cgroup under CRI, cpuset, devices and freezer are left as they are).
func checkInCgroup(t *testing.T, pid int, path string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, line := range lines {
		// v2 only: one line, "0::path"; hybrid: the unified line is not the shim's either.
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || (f[1] == "" && len(lines) > 1) || (f[1] != "" && !podControllers.MatchString(f[1])) {
			continue
		}
		checked++
		if f[2] != path {
			t.Errorf("pid %d is in cgroup %s of hierarchy %q, want %s", pid, f[2], f[1], path)
		}
	}
	if checked == 0 {
		t.Errorf("no cgroup hierarchy of pid %d was checked:\n%s", pid, data)
	}
}

// criSandboxLeftovers adds to what PodLeftovers checks what is the sandbox's own: its process and its cgroups.
func criSandboxLeftovers(c *harness.CRI, pod *harness.Pod, pid int, containers ...string) []string {
	left := c.PodLeftovers(pod, containers...)
	if harness.ProcessAlive(pid) {
		left = append(left, fmt.Sprintf("pod process %d", pid))
	}
	for _, h := range []string{"memory", "pids", "cpu"} {
		if d := filepath.Join("/sys/fs/cgroup", h, pod.Config.Linux.CgroupParent); harness.Exists(d) {
			left = append(left, "cgroup "+d)
		}
	}
	return left
}

func checkCRISandboxGone(t *testing.T, c *harness.CRI, pod *harness.Pod, pid int, containers ...string) {
	t.Helper()
	var left []string
	if !harness.WaitUntil(10*time.Second, func() bool { left = criSandboxLeftovers(c, pod, pid, containers...); return len(left) == 0 }) {
		t.Fatalf("%v left behind:\n  %s", pod, strings.Join(left, "\n  "))
	}
}

// A Kubernetes pod with sandboxer = "shim": READY with an IP and no pause container; its containers see the pod's
// hostname, resolv.conf, sysctls, eth0 and one tmpfs /dev/shm, share its net, ipc, uts and pid namespaces (its own
// process's, pid 1 there); exec, logs, stats and pod stats work; stopp and rmp leave no shim, pin, mount, cgroup or
// process.
func TestCRISandboxPod(t *testing.T) {
	forEachCRI2x(t, nil, func(t *testing.T, c *harness.CRI) {
		cfg := sandboxPodConfig(c, "web")
		pod := c.RunPod(t, cfg)
		pid := podPid(t, c, pod)
		var status struct {
			Status struct {
				Network struct {
					IP string `json:"ip"`
				} `json:"network"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(c.MustCrictl(t, "inspectp", "-o", "json", pod.ID)), &status); err != nil {
			t.Fatal(err)
		}
		if !subnetHas(c.CNI.Subnet, "inet "+status.Status.Network.IP+"/32") {
			t.Errorf("pod IP %q is not of %s", status.Status.Network.IP, c.CNI.Subnet)
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.HasPrefix(string(cmdline), harness.PodProcessMarker+"\x00") {
			t.Errorf("pid %d CRI reports for the pod is not the pod's own process: %q, %v", pid, cmdline, err)
		}

		a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sh", "-c", "echo hello from a; exec sleep 1000"))
		b := c.RunContainer(t, pod, c.ContainerConfig(cfg, "b", "sleep", "1000"))

		// No pause container, no container or runc state for the sandbox: only a and b.
		ctrs := strings.Fields(c.CtrWith(harness.CtrOpts{Namespace: harness.CRINamespace}, "containers", "ls", "-q").Stdout)
		if len(ctrs) != 2 || strings.Contains(strings.Join(ctrs, " "), pod.ID) {
			t.Errorf("containerd's containers = %v, want %s and %s only", ctrs, a, b)
		}
		if harness.Exists(filepath.Join(harness.RuncRoot, harness.CRINamespace, pod.ID)) {
			t.Errorf("runc has state for the sandbox %s", pod.ID)
		}
		if n := len(c.ShimProcesses(c.Runtime, "")); n != 1 {
			t.Errorf("%d shims serve the pod, want 1", n)
		}

		for _, kind := range []string{"net", "ipc", "uts", "pid"} {
			want := nsLink(t, pid, kind)
			for _, id := range []string{a, b} {
				if got := c.Exec(t, id, "readlink", "/proc/self/ns/"+kind); got != want {
					t.Errorf("%s namespace of %s = %s, want the pod's %s", kind, id, got, want)
				}
			}
		}
		for what, tc := range map[string]struct {
			args []string
			want string
		}{
			"hostname":           {[]string{"hostname"}, "web-host"},
			"/etc/hostname":      {[]string{"cat", "/etc/hostname"}, "web-host"},
			"resolv.conf":        {[]string{"cat", "/etc/resolv.conf"}, "search svc.test\nnameserver 10.9.8.7\noptions ndots:3"},
			"ipc sysctl":         {[]string{"cat", "/proc/sys/kernel/msgmax"}, "12345"},
			"net sysctl":         {[]string{"cat", "/proc/sys/net/ipv4/tcp_syncookies"}, "0"},
			"unprivileged ports": {[]string{"cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"}, "0"},
			"ping range":         {[]string{"cat", "/proc/sys/net/ipv4/ping_group_range"}, "0\t2147483647"},
			"pid 1":              {[]string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"}, harness.PodProcessMarker + " 01111N web-host /proc/sys/kernel/msgmax 12345 /proc/sys/net/ipv4/ip_unprivileged_port_start 0 /proc/sys/net/ipv4/ping_group_range 0 2147483647 /proc/sys/net/ipv4/tcp_syncookies 0"},
		} {
			got := c.Exec(t, a, tc.args...)
			if what == "pid 1" {
				// The last flag counts the cgroup v1 tasks files the starter joined: the machine's hierarchies.
				got = cgroupFlag.ReplaceAllString(got, "${1}N")
			}
			if got != tc.want {
				t.Errorf("%s in the container = %q, want %q", what, got, tc.want)
			}
		}
		// The pod's process is in the pod's cgroup, in a leaf of its own, in every hierarchy that has a controller.
		checkInCgroup(t, pid, cfg.Linux.CgroupParent+"/"+pod.ID)
		if out := c.Exec(t, a, "ip", "-4", "-o", "addr", "show", "eth0"); !subnetHas(c.CNI.Subnet, out) {
			t.Errorf("eth0 of the pod has no address of %s: %q", c.CNI.Subnet, out)
		}
		c.Exec(t, a, "sh", "-c", "echo shared > /dev/shm/x")
		if got := c.Exec(t, b, "cat", "/dev/shm/x"); got != "shared" {
			t.Errorf("/dev/shm/x in b = %q: the pod's /dev/shm is not shared", got)
		}
		if got := c.Exec(t, b, "sh", "-c", "grep ' /dev/shm ' /proc/mounts"); !strings.Contains(got, "tmpfs") {
			t.Errorf("/dev/shm: %q, want a tmpfs", got)
		}
		if got := c.MustCrictl(t, "logs", a); !strings.Contains(got, "hello from a") {
			t.Errorf("crictl logs %s = %q", a, got)
		}
		if out := c.MustCrictl(t, "stats", "-o", "json", a); !strings.Contains(out, `"memory"`) {
			t.Errorf("crictl stats %s: %s", a, out)
		}
		var podStats struct {
			Stats []struct {
				Attributes struct {
					ID string `json:"id"`
				} `json:"attributes"`
				Linux struct {
					CPU    *struct{} `json:"cpu"`
					Memory *struct {
						WorkingSetBytes *struct {
							Value string `json:"value"`
						} `json:"workingSetBytes"`
					} `json:"memory"`
				} `json:"linux"`
			} `json:"stats"`
		}
		out := c.MustCrictl(t, "statsp", "-o", "json", "--id", pod.ID)
		if err := json.Unmarshal([]byte(out), &podStats); err != nil {
			t.Fatalf("crictl statsp: %v\n%s", err, out)
		}
		if len(podStats.Stats) != 1 || podStats.Stats[0].Attributes.ID != pod.ID || podStats.Stats[0].Linux.CPU == nil ||
			podStats.Stats[0].Linux.Memory == nil || podStats.Stats[0].Linux.Memory.WorkingSetBytes == nil {
			t.Errorf("crictl statsp: %s", out)
		}

		c.MustCrictl(t, "stopp", pod.ID)
		if st := c.InspectPod(t, pod.ID).Status.State; st != "SANDBOX_NOTREADY" {
			t.Errorf("pod after stopp: %s", st)
		}
		if harness.ProcessAlive(pid) {
			t.Errorf("the pod's process %d outlived stopp", pid)
		}
		c.MustCrictl(t, "rmp", pod.ID)
		checkCRISandboxGone(t, c, pod, pid, a, b)
	})
}

// A user-namespaced pod (userns_options POD, 0:100000:65536): the pod's process is in the user namespace that owns
// CRI's network namespace, and its containers run with that mapping seen from inside.
func TestCRISandboxUserNamespace(t *testing.T) {
	forEachCRI2x(t, nil, func(t *testing.T, c *harness.CRI) {
		if err := os.Chmod(c.Dir, 0o711); err != nil { // the runtime in the pod's user namespace reaches the bundles
			t.Fatal(err)
		}
		cfg := sandboxPodConfig(c, "userns")
		cfg.Linux.Sysctls = nil
		m := []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
		pod := c.RunPod(t, cfg)
		pid := podPid(t, c, pod)
		uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
		if err != nil || strings.Join(strings.Fields(string(uidMap)), " ") != "0 100000 65536" {
			t.Fatalf("uid_map of the pod's process = %q, %v", uidMap, err)
		}
		a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sleep", "1000"))
		if got := strings.Join(strings.Fields(c.Exec(t, a, "cat", "/proc/self/uid_map")), " "); got != "0 100000 65536" {
			t.Errorf("uid_map in the container = %q", got)
		}
		for _, kind := range []string{"user", "net", "ipc", "uts", "pid"} {
			if got, want := c.Exec(t, a, "readlink", "/proc/self/ns/"+kind), nsLink(t, pid, kind); got != want {
				t.Errorf("%s namespace of %s = %s, want the pod's %s", kind, a, got, want)
			}
		}
		if out := c.Exec(t, a, "ip", "-4", "-o", "addr", "show", "eth0"); !subnetHas(c.CNI.Subnet, out) {
			t.Errorf("eth0 of the pod has no address of %s: %q", c.CNI.Subnet, out)
		}
		c.RemovePod(t, pod)
		checkCRISandboxGone(t, c, pod, pid, a)
	})
}

// containerd restarted with pods running: the pods stay READY (same process) and their containers RUNNING; exec
// still works, and a new container joins.
func TestCRISandboxContainerdRestart(t *testing.T) {
	forEachCRI2x(t, nil, func(t *testing.T, c *harness.CRI) {
		cfg := sandboxPodConfig(c, "restart")
		pod := c.RunPod(t, cfg)
		pid := podPid(t, c, pod)
		a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sleep", "1000"))

		c.Restart(t)
		harness.Eventually(t, 30*time.Second, "CRI answers after the restart", func() bool { return c.Crictl("pods").Code == 0 })
		if st := c.InspectPod(t, pod.ID); st.Status.State != "SANDBOX_READY" || st.Info.Pid != pid {
			t.Fatalf("pod after restart: %s, pid %d; want SANDBOX_READY, pid %d", st.Status.State, st.Info.Pid, pid)
		}
		if st := c.InspectContainer(t, a).Status.State; st != "CONTAINER_RUNNING" {
			t.Fatalf("container after restart: %s", st)
		}
		if got := c.Exec(t, a, "hostname"); got != "restart-host" {
			t.Errorf("hostname after restart = %q", got)
		}
		b := c.RunContainer(t, pod, c.ContainerConfig(cfg, "b", "sleep", "1000"))
		if got, want := c.Exec(t, b, "readlink", "/proc/self/ns/net"), nsLink(t, pid, "net"); got != want {
			t.Errorf("a container created after the restart is in %s, want the pod's %s", got, want)
		}
		c.RemovePod(t, pod)
		checkCRISandboxGone(t, c, pod, pid, a, b)
	})
}

// Bootstrap version 2 under CRI: containerd runs start for each container, which carries the sandbox's id as
// io.kubernetes.cri.sandbox-id and so reaches the sandbox's shim.
func TestCRISandboxBootstrapV2(t *testing.T) {
	forEachCRI2x(t, []string{"CONTAINERD_SHIM_POD_V2_BOOTSTRAP_VERSION=2"}, func(t *testing.T, c *harness.CRI) {
		cfg := sandboxPodConfig(c, "v2")
		pod := c.RunPod(t, cfg)
		pid := podPid(t, c, pod)
		a := c.RunContainer(t, pod, c.ContainerConfig(cfg, "a", "sleep", "1000"))
		bundle := filepath.Join(c.State, "io.containerd.runtime.v2.task", harness.CRINamespace, a)
		if !harness.Exists(filepath.Join(bundle, "address")) {
			t.Errorf("containerd ran no start for %s: not the version 2 path", a)
		}
		if n := len(c.ShimProcesses(c.Runtime, "")); n != 1 {
			t.Errorf("%d shims serve the pod, want 1", n)
		}
		if got, want := c.Exec(t, a, "readlink", "/proc/self/ns/net"), nsLink(t, pid, "net"); got != want {
			t.Errorf("%s is in %s, want the pod's %s", a, got, want)
		}
		c.RemovePod(t, pod)
		checkCRISandboxGone(t, c, pod, pid, a)
	})
}

// UpdatePodSandboxResources (containerd 2.4, pod resize): the pod's new resources plus its overhead go to the pod
// cgroup.
func TestCRISandboxUpdateResources(t *testing.T) {
	forEachCRI2x(t, nil, func(t *testing.T, c *harness.CRI) {
		cfg := sandboxPodConfig(c, "resize")
		pod := c.RunPod(t, cfg)
		pid := podPid(t, c, pod)
		conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = runtimeapi.NewRuntimeServiceClient(conn).UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: pod.ID,
			Overhead:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, CpuShares: 2},
			Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000},
		})
		if err != nil {
			t.Fatalf("UpdatePodSandboxResources: %v", err)
		}
		parent := cfg.Linux.CgroupParent
		for file, want := range map[string]string{
			"/sys/fs/cgroup/memory" + parent + "/memory.limit_in_bytes": fmt.Sprint(65 << 20),
			"/sys/fs/cgroup/cpu" + parent + "/cpu.shares":               "514",
			"/sys/fs/cgroup/cpu" + parent + "/cpu.cfs_period_us":        "100000",
			"/sys/fs/cgroup/cpu" + parent + "/cpu.cfs_quota_us":         "50000",
		} {
			got, err := os.ReadFile(file)
			if err != nil || strings.TrimSpace(string(got)) != want {
				t.Errorf("%s = %q, %v; want %s", file, got, err, want)
			}
		}
		c.RemovePod(t, pod)
		checkCRISandboxGone(t, c, pod, pid)
	})
}
