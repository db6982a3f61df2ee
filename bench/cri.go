package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerd24Dir is where scripts/deps.sh installs containerd 2.4 (with its
// containerd-shim-runc-v2).
const containerd24Dir = "/var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin"

// criDaemon is a private containerd 2.4 with CRI serving two runtime
// handlers: "pod", ours as the pod's sandbox (sandboxer = "shim"), and
// "runc", containerd-shim-runc-v2 with the pause container.
type criDaemon struct {
	dir, sock, suffix string
	bridge, cgroup    string
	cmd               *exec.Cmd
	conn              *grpc.ClientConn
	rs                runtimeapi.RuntimeServiceClient
}

func startCRIDaemon(shimDir string) (*criDaemon, error) {
	dir, err := os.MkdirTemp("", "podv2-bench-cri-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o711)
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	d := &criDaemon{dir: dir, sock: filepath.Join(dir, "c.sock"), suffix: suffix, bridge: "pv2bench" + suffix[:6],
		cgroup: "/podv2-bench-" + suffix}
	subnet, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "podv2-bench-" + suffix,
		"plugins": []any{map[string]any{"type": "bridge", "bridge": d.bridge, "isGateway": false, "ipMasq": false,
			"ipam": map[string]any{"type": "host-local", "dataDir": filepath.Join(dir, "ipam"), "ranges": [][]map[string]string{{{"subnet": subnet}}}}}},
	})
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-bench.conflist"), conf, 0o644); err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[4]q
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %[5]q
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod]
  runtime_type = "io.containerd.pod.v2"
  sandboxer = "shim"
  disable_pause_image_pull = true
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, pauseImage, filepath.Join(dir, "cni"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(filepath.Join(containerd24Dir, "containerd"), "--config", filepath.Join(dir, "config.toml"))
	d.cmd.Env = append(os.Environ(), "PATH="+shimDir+":"+containerd24Dir+":"+os.Getenv("PATH"))
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd 2.4 (make deps installs it): %w", err)
	}
	for i := 0; i < 200 && !exists(d.sock); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	for _, args := range [][]string{{"-o", filepath.Join(dir, "image.tar")}, {"-pause", "-o", filepath.Join(dir, "pause.tar")}} {
		mk := exec.Command("go", append([]string{"run", "./cmd/mkimage"}, args...)...)
		mk.Dir = "integration"
		if out, err := mk.CombinedOutput(); err != nil {
			d.stop()
			return nil, fmt.Errorf("build image: %v: %s", err, out)
		}
		tar := args[len(args)-1]
		imp := exec.Command(filepath.Join(containerd24Dir, "ctr"), "--address", d.sock, "--namespace", "k8s.io", "images", "import", tar)
		if out, err := imp.CombinedOutput(); err != nil {
			d.stop()
			return nil, fmt.Errorf("import %s: %v: %s", tar, err, out)
		}
	}
	d.conn, err = grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.stop()
		return nil, err
	}
	d.rs = runtimeapi.NewRuntimeServiceClient(d.conn)
	is := runtimeapi.NewImageServiceClient(d.conn)
	// CRI is ready once it knows both images and its network.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := 0
		for _, img := range []string{image, pauseImage} {
			if r, err := is.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: img}}); err == nil && r.Image != nil {
				ok++
			}
		}
		st, err := d.rs.Status(context.Background(), &runtimeapi.StatusRequest{})
		if err == nil && ok == 2 && len(st.GetStatus().GetConditions()) >= 2 && st.Status.Conditions[0].Status && st.Status.Conditions[1].Status {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("CRI not ready after 60s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pauseImage is the sandbox image of the reference: busybox's sleep, as the
// integration suite builds it (no registry is reachable).
const pauseImage = "docker.io/library/podtest-pause:latest"

func (d *criDaemon) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "bench"},
		Hostname: name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    d.cgroup + "/" + name,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}},
		},
	}
}

// phases are the times (ms) of a pod's three CRI calls: RunPodSandbox,
// CreateContainer, StartContainer.
type phases [3]float64

// runPod runs a pod of handler; with a container, one sleeping container in
// it. took, if not nil, gets the time of each call.
func (d *criDaemon) runPod(ctx context.Context, handler, name string, container bool, took *phases) (string, error) {
	var dummy phases
	if took == nil {
		took = &dummy
	}
	cfg := d.podConfig(name)
	t0 := time.Now()
	r, err := d.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return "", fmt.Errorf("run pod %s (%s): %w", name, handler, err)
	}
	took[0] = ms(time.Since(t0))
	if !container {
		return r.PodSandboxId, nil
	}
	t0 = time.Now()
	c, err := d.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  r.PodSandboxId,
		SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{"sleep", "100000"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}}},
		},
	})
	if err != nil {
		return r.PodSandboxId, fmt.Errorf("create container in %s (%s): %w", name, handler, err)
	}
	took[1] = ms(time.Since(t0))
	t0 = time.Now()
	if _, err := d.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return r.PodSandboxId, fmt.Errorf("start container in %s (%s): %w", name, handler, err)
	}
	took[2] = ms(time.Since(t0))
	return r.PodSandboxId, nil
}

// removePods stops and removes every pod.
func (d *criDaemon) removePods(ctx context.Context) error {
	pods, err := d.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if _, err := d.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			return err
		}
		if _, err := d.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			return err
		}
	}
	return nil
}

func (d *criDaemon) stop() {
	if d.rs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		d.removePods(ctx)
		cancel()
	}
	if d.conn != nil {
		d.conn.Close()
	}
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	}
	exec.Command("sh", "-c", "grep -o ' "+d.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	exec.Command("ip", "link", "del", d.bridge).Run()
	exec.Command("sh", "-c", "find /sys/fs/cgroup/*"+d.cgroup+" -depth -type d -exec rmdir {} + 2>/dev/null").Run()
	os.RemoveAll(d.dir)
}

// freeSubnet is a 10.x.y.0/24 that holds no address of the host's.
func freeSubnet() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for i := 0; i < 100; i++ {
		b := make([]byte, 2)
		rand.Read(b)
		_, n, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", 100+int(b[0])%100, b[1]))
		free := true
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (n.Contains(ipn.IP) || ipn.Contains(n.IP)) {
				free = false
			}
		}
		if free {
			return n.String(), nil
		}
	}
	return "", fmt.Errorf("no free 10.x.y.0/24")
}

// processesOf lists the pids whose command line satisfies match.
func processesOf(match func(argv []string, pid int) bool) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		var pid int
		fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
		if match(strings.Split(strings.TrimRight(string(data), "\x00"), "\x00"), pid) {
			out = append(out, pid)
		}
	}
	return out
}

// inCgroup says whether pid's cgroups are below path.
func inCgroup(pid int, path string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && strings.Contains(string(data), ":"+path+"/")
}
