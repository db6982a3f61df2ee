package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/integration/image"
)

// CRINamespace is the containerd namespace CRI keeps its pods, containers and images in (fixed by CRI, so shared
// with every CRI daemon on the host: cleanup touches only the ids this daemon made).
const CRINamespace = "k8s.io"

// CRI is a private containerd with its CRI plugin serving (the README's runtime handler `pod`, the pause image
// image.PauseName, a bridge network of its own), driven through crictl.
type CRI struct {
	*Containerd
	CrictlBin string
	Handler   string // the runtime handler pods run with: "pod" for our runtime, "runc" for the reference

	crictlConfig string
	// mu guards made: every pod and container id this daemon's CRI handed out, for cleanup.
	mu   sync.Mutex
	made []string
}

// ForEachCRI runs fn as one subtest per containerd flavour, each with its own CRI daemon (see StartCRI).
func ForEachCRI(t *testing.T, fn func(t *testing.T, c *CRI)) {
	t.Helper()
	CheckRoot(t)
	for _, f := range Flavours(t) {
		t.Run(f.Name, func(t *testing.T) { fn(t, StartCRI(t, f)) })
	}
}

// StartCRI starts a containerd of flavour f with CRI, imports the busybox and pause images into CRI's namespace and
// waits until CRI reports its runtime and network ready. Everything goes when t ends.
func StartCRI(t testing.TB, f Flavour) *CRI {
	t.Helper()
	return StartCRIWith(t, f, CRIOptions{})
}

// CRIOptions change how StartCRIWith sets up a containerd with CRI.
type CRIOptions struct {
	ExtraConfig string   // appended to config.toml (more runtime handlers, say)
	Env         []string // added to containerd's environment (and so its shims')
}

// StartCRIWith is StartCRI with options.
func StartCRIWith(t testing.TB, f Flavour, o CRIOptions) *CRI {
	t.Helper()
	crictl := CrictlPath(t)
	if !Exists(filepath.Join(CNIBinDir, "bridge")) {
		t.Fatalf("%s/bridge is missing: install containernetworking-plugins with scripts/deps.sh (make deps)", CNIBinDir)
	}
	c := &CRI{Containerd: Start(t, f, Options{CRI: true, NoImage: true, ExtraConfig: o.ExtraConfig, Env: o.Env}), CrictlBin: crictl, Handler: "runc"}
	if IsOurs(c.Runtime) {
		c.Handler = "pod"
	}
	c.crictlConfig = filepath.Join(c.Dir, "crictl.yaml")
	if err := c.writeCrictlConfig(); err != nil {
		t.Fatal(err)
	}
	c.beforeStop = append(c.beforeStop, c.removePods)
	c.afterStop = append(c.afterStop, c.cleanAfterStop)

	archive, img := ImageArchive(t)
	c.importArchive(t, CRINamespace, archive, img.Name)
	c.Image = img.Name
	pause, _ := PauseArchive(t)
	c.importArchive(t, CRINamespace, pause, image.PauseName)
	c.waitReady(t)
	return c
}

// criConfig is the CRI part of config.toml: the pause image, the network, and what this VM needs (no
// CAP_SYS_RESOURCE: restrict_oom_score_adj). Network namespace pins go under the daemon's state directory.
func (c *Containerd) criConfig() string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	stream := "[plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n"
	if c.Flavour.Is16() {
		return stream + fmt.Sprintf("  sandbox_image = %s\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n"+
			"  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = %s\n    conf_dir = %s\n\n",
			q(image.PauseName), q(CNIBinDir), q(c.CNI.ConfDir))
	}
	return stream + fmt.Sprintf("\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = %s\n\n"+
		"[plugins.\"io.containerd.cri.v1.runtime\"]\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n"+
		"  [plugins.\"io.containerd.cri.v1.runtime\".cni]\n    bin_dirs = [%s]\n    conf_dir = %s\n\n",
		q(image.PauseName), q(CNIBinDir), q(c.CNI.ConfDir))
}

// waitReady waits until CRI reports RuntimeReady and NetworkReady and lists both images.
func (c *CRI) waitReady(t testing.TB) {
	t.Helper()
	var last *Result
	ready := func() bool {
		last = c.Crictl("info")
		if last.Code != 0 {
			return false
		}
		var info struct {
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status bool   `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		}
		if json.Unmarshal([]byte(last.Stdout), &info) != nil {
			return false
		}
		up := 0
		for _, cond := range info.Status.Conditions {
			if (cond.Type == "RuntimeReady" || cond.Type == "NetworkReady") && cond.Status {
				up++
			}
		}
		return up == 2
	}
	if !WaitUntil(30*time.Second, ready) {
		c.dumpLog(t, 100)
		t.Fatalf("CRI not ready after 30s: %v", last)
	}
	// CRI learns of imported images from containerd's events.
	for _, img := range []string{c.Image, image.PauseName} {
		if !WaitUntil(30*time.Second, func() bool { last = c.Crictl("inspecti", img); return last.Code == 0 }) {
			t.Fatalf("CRI does not know image %s: %v", img, last)
		}
	}
}

// remember records ids (pods, containers) this daemon's CRI made.
func (c *CRI) remember(ids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.made = append(c.made, ids...)
}

func (c *CRI) madeIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.made...)
}

// removePods removes every pod through CRI (stopping them first), then whatever CRI left in its namespace.
func (c *CRI) removePods(t testing.TB) {
	if out := c.Crictl("pods", "-q"); out.Code == 0 {
		for _, id := range strings.Fields(out.Stdout) {
			t.Logf("cleanup: pod %s left: crictl rmp -f", id)
			c.remember(id)
			if r := c.Crictl("rmp", "-f", id); r.Code != 0 {
				t.Logf("cleanup: %v", r)
			}
		}
	}
	r := c.CtrWith(CtrOpts{Namespace: CRINamespace}, "containers", "ls", "-q")
	c.remember(strings.Fields(r.Stdout)...)
	for _, id := range strings.Fields(r.Stdout) {
		t.Logf("cleanup: container %s left in namespace %s", id, CRINamespace)
		c.CtrWith(CtrOpts{Namespace: CRINamespace}, "tasks", "kill", "-a", "-s", "SIGKILL", id)
		c.CtrWith(CtrOpts{Namespace: CRINamespace}, "tasks", "rm", "-f", id)
		c.CtrWith(CtrOpts{Namespace: CRINamespace}, "containers", "rm", id)
	}
}

// cleanAfterStop removes what the daemon's pods may have left once containerd and the shims are gone: runc state
// and the shims' pod directories of the ids CRI made here, their sockets, the bridge and CNI's caches.
func (c *CRI) cleanAfterStop(t testing.TB) {
	runcRoot := filepath.Join(RuncRoot, CRINamespace)
	for _, id := range c.madeIDs() {
		if Exists(filepath.Join(runcRoot, id)) {
			t.Logf("cleanup: runc delete --force %s", id)
			if out, err := exec.Command("runc", "--root", runcRoot, "delete", "--force", id).CombinedOutput(); err != nil {
				t.Logf("cleanup: runc delete %s: %v %s", id, err, out)
			}
		}
		if dir := PodStateDir(c.Address, CRINamespace, id); Exists(dir) {
			t.Logf("cleanup: removing pod state %s", dir)
			for _, m := range MountsUnder(dir) {
				_ = unix.Unmount(m, unix.MNT_DETACH)
			}
			os.RemoveAll(dir)
		}
		if sock := shimSocketPath(c.Address, CRINamespace, id); Exists(sock) {
			t.Logf("cleanup: removing shim socket %s", sock)
			os.Remove(sock)
		}
	}
	for _, what := range c.CNI.remove() {
		t.Logf("cleanup: %s", what)
	}
}
