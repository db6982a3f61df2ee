package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodConfig is a pod sandbox config for this daemon: the name, a fresh uid, cgroup parent /<daemon namespace>
// (removed by Stop) and a log directory in Dir. Tests set what they test (namespace options, annotations) before
// RunPod.
func (c *CRI) PodConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: randomHex(8), Namespace: "podv2-it"},
		LogDirectory: filepath.Join(c.Dir, "pod-logs", name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    "/" + c.Namespace,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}},
		},
	}
}

// ContainerConfig is a config for a container of pod running args in the busybox image, with the pod's namespace
// options (as the kubelet does).
func (c *CRI) ContainerConfig(pod *runtimeapi.PodSandboxConfig, name string, args ...string) *runtimeapi.ContainerConfig {
	nsOpts := &runtimeapi.NamespaceOption{}
	if o := pod.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		nsOpts = proto.Clone(o).(*runtimeapi.NamespaceOption)
	}
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: c.Image},
		Command:  args,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: nsOpts},
		},
	}
}

// writeConfig writes a pod or container config as JSON (crictl reads the CRI types' JSON names) under Dir/cri.
func (c *CRI) writeConfig(t testing.TB, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.Dir, "cri")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, name+"-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// Pod is a pod run through CRI.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	NetNS  string // the network namespace CRI made for the pod ("" for a host-network pod)
	file   string // the config as crictl read it, for crictl create
}

// RunPodResult runs `crictl runp --runtime <handler>` with cfg; the pod is nil unless it ran.
func (c *CRI) RunPodResult(t testing.TB, cfg *runtimeapi.PodSandboxConfig) (*Pod, *Result) {
	t.Helper()
	file := c.writeConfig(t, cfg.GetMetadata().GetName()+"-pod", cfg)
	r := c.Crictl("runp", "--runtime", c.Handler, file)
	if r.Code != 0 {
		return nil, r
	}
	p := &Pod{ID: strings.TrimSpace(r.Stdout), Config: cfg, file: file}
	c.remember(p.ID)
	return p, r
}

// RunPod runs a pod and fails t unless it is ready.
func (c *CRI) RunPod(t testing.TB, cfg *runtimeapi.PodSandboxConfig) *Pod {
	t.Helper()
	p, r := c.RunPodResult(t, cfg)
	if p == nil {
		t.Fatalf("%v", r)
	}
	i := c.InspectPod(t, p.ID)
	if i.Status.State != "SANDBOX_READY" {
		t.Fatalf("pod %s is %s after runp, not SANDBOX_READY", p.ID, i.Status.State)
	}
	p.NetNS, _ = i.Namespace(specs.NetworkNamespace)
	return p
}

// CreateContainerResult runs `crictl create` of cfg in pod; the id is empty unless it was created.
func (c *CRI) CreateContainerResult(t testing.TB, pod *Pod, cfg *runtimeapi.ContainerConfig) (string, *Result) {
	t.Helper()
	file := c.writeConfig(t, cfg.GetMetadata().GetName()+"-container", cfg)
	r := c.Crictl("create", "--no-pull", pod.ID, file, pod.file)
	if r.Code != 0 {
		return "", r
	}
	id := strings.TrimSpace(r.Stdout)
	c.remember(id)
	return id, r
}

// StartContainerResult runs `crictl start id`.
func (c *CRI) StartContainerResult(id string) *Result { return c.Crictl("start", id) }

// RunContainer creates and starts a container of pod and fails t unless it is running.
func (c *CRI) RunContainer(t testing.TB, pod *Pod, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, r := c.CreateContainerResult(t, pod, cfg)
	if id == "" {
		t.Fatalf("%v", r)
	}
	if r := c.StartContainerResult(id); r.Code != 0 {
		t.Fatalf("%v", r)
	}
	if st := c.InspectContainer(t, id).Status.State; st != "CONTAINER_RUNNING" {
		t.Fatalf("container %s is %s after start, not CONTAINER_RUNNING", id, st)
	}
	return id
}

// ExecResult runs args in container id through CRI's ExecSync (`crictl exec --sync`).
func (c *CRI) ExecResult(id string, args ...string) *Result {
	return c.Crictl(append([]string{"exec", "--sync", "--timeout", "30", id}, args...)...)
}

// Exec runs args in container id and fails t unless it exits 0; it returns the output without trailing space.
func (c *CRI) Exec(t testing.TB, id string, args ...string) string {
	t.Helper()
	r := c.ExecResult(id, args...)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// Inspection is what `crictl inspect` and `crictl inspectp` report of a container or pod that CRI runs.
type Inspection struct {
	Status struct {
		State string `json:"state"`
	} `json:"status"`
	Info struct {
		Pid  int         `json:"pid"`
		Spec *specs.Spec `json:"runtimeSpec"`
	} `json:"info"`
}

// Namespace is the path the spec gives the namespace of type typ ("" when it asks for a new one), and whether the
// spec has an entry of that type at all.
func (i *Inspection) Namespace(typ specs.LinuxNamespaceType) (path string, ok bool) {
	if i.Info.Spec == nil || i.Info.Spec.Linux == nil {
		return "", false
	}
	for _, ns := range i.Info.Spec.Linux.Namespaces {
		if ns.Type == typ {
			return ns.Path, true
		}
	}
	return "", false
}

// InspectContainer is `crictl inspect -o json id`.
func (c *CRI) InspectContainer(t testing.TB, id string) *Inspection {
	t.Helper()
	return c.inspect(t, "inspect", id)
}

// InspectPod is `crictl inspectp -o json id`.
func (c *CRI) InspectPod(t testing.TB, id string) *Inspection {
	t.Helper()
	return c.inspect(t, "inspectp", id)
}

func (c *CRI) inspect(t testing.TB, cmd, id string) *Inspection {
	t.Helper()
	out := c.MustCrictl(t, cmd, "-o", "json", id)
	var i Inspection
	if err := json.Unmarshal([]byte(out), &i); err != nil {
		t.Fatalf("crictl %s %s: %v\n%s", cmd, id, err, out)
	}
	return &i
}

// RemovePod stops and removes a pod (crictl stopp, rmp) and fails t unless both succeed.
func (c *CRI) RemovePod(t testing.TB, pod *Pod) {
	t.Helper()
	c.MustCrictl(t, "stopp", pod.ID)
	c.MustCrictl(t, "rmp", pod.ID)
}

// WaitContainerState waits (30 s at most) until container id is in state (CONTAINER_EXITED, ...).
func (c *CRI) WaitContainerState(t testing.TB, id, state string) {
	t.Helper()
	var last string
	if !WaitUntil(30*time.Second, func() bool { last = c.InspectContainer(t, id).Status.State; return last == state }) {
		t.Fatalf("container %s is %s, not %s, after 30s", id, last, state)
	}
}

func (p *Pod) String() string {
	return fmt.Sprintf("pod %s (%s)", p.ID, p.Config.GetMetadata().GetName())
}
