package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// handlerFeatures is what `crictl info` says CRI's runtime handlers support.
func handlerFeatures(t *testing.T, c *harness.CRI) map[string]*runtimeapi.RuntimeHandlerFeatures {
	t.Helper()
	out := c.MustCrictl(t, "info", "-o", "json")
	var info struct {
		RuntimeHandlers []struct {
			Name     string `json:"name"`
			Features struct {
				RecursiveReadOnlyMounts bool `json:"recursive_read_only_mounts"`
				UserNamespaces          bool `json:"user_namespaces"`
			} `json:"features"`
		} `json:"runtimeHandlers"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info: %v\n%s", err, out)
	}
	m := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for _, h := range info.RuntimeHandlers {
		m[h.Name] = &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts, UserNamespaces: h.Features.UserNamespaces}
	}
	if len(m) == 0 {
		t.Fatalf("crictl info lists no runtime handlers:\n%s", out)
	}
	return m
}

// Issue 11, item 0 and "Honest -info", under containerd 2.4's CRI with the README's config and Debian's runc 1.1.5:
// CRI's status lists our handler with user namespaces and recursive read-only mounts; a Kubernetes pod with a user
// namespace (userns_options mode POD, 0:100000:65536, as for hostUsers: false) runs a container in it, whose rootfs
// comes as id-mapped layers (uidmap=, gidmap=) and is its root's, and which sees its mapping and writes to an
// id-mapped volume (a host directory owned by host root) as root, the file host root's on the host. Nothing is left
// once the pod is removed. (containerd 1.6's CRI has no user namespaces.)
func TestCRIUserNamespacedPod(t *testing.T) {
	harness.CheckRoot(t)
	for _, f := range harness.Flavours(t) {
		t.Run(f.Name, func(t *testing.T) {
			if f.Is16() {
				t.Skip("containerd 1.6's CRI has no user namespaces (CRI's userns_options came with 1.7)")
			}
			c := harness.StartCRI(t, f)
			userNamespaceReachable(t, c.Containerd)
			if harness.IsOurs(c.Runtime) {
				hs := handlerFeatures(t, c)
				if h := hs[c.Handler]; h == nil || !h.UserNamespaces || !h.RecursiveReadOnlyMounts {
					t.Errorf("CRI's runtime handler %s: features %v, want user namespaces and recursive read-only mounts", c.Handler, h)
				}
				t.Logf("CRI's runtime handlers: %v", hs)
			}

			mapping := []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}
			cfg := c.PodConfig("userns")
			cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: mapping, Gids: mapping}
			pod := c.RunPod(t, cfg)

			vol := filepath.Join(c.Dir, "cri-volume")
			if err := os.Mkdir(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			cc := c.ContainerConfig(cfg, "a", "sleep", "1000")
			// As the kubelet asks for the volumes of a hostUsers: false pod.
			cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol, UidMappings: mapping, GidMappings: mapping}}
			a := c.RunContainer(t, pod, cc)

			out := c.Exec(t, a, "sh", "-c", "cat /proc/self/uid_map; stat -c %u:%g /bin/busybox /data; echo x > /etc/written && echo hi > /data/new && echo wrote")
			if got, want := strings.Join(strings.Fields(out), " "), "0 100000 65536 0:0 0:0 wrote"; got != want {
				t.Errorf("in the pod: %q, want %q", got, want)
			}
			if uid, gid := hostOwner(t, filepath.Join(vol, "new")); uid != 0 || gid != 0 {
				t.Errorf("the file the container's root wrote to the volume is %d:%d on the host, want 0:0", uid, gid)
			}
			if harness.IsOurs(c.Runtime) {
				if n := len(c.ShimProcesses(c.Runtime, "")); n != 1 {
					t.Errorf("%d shims serve the pod, want 1", n)
				}
			}
			c.RemovePod(t, pod)
			c.CheckPodGone(t, pod, a)
		})
	}
}

// Issue 11, item 1, through CRI, with the two handler shapes of the README: a read-only volume of a directory with a
// submount is read-only all the way down on the README's handler "pod" (IfPossible, the default), and only at the
// top on a handler of type io.containerd.pod.v2 whose options name a config file (ConfigPath, the one key of the
// table that containerd 1.6 passes on) saying treat_ro_mounts_as_rro = "Disabled"; a pod annotation
// io.containerd.pod.v2.rro (passed to the containers by pod_annotations) overrides that handler's policy.
func TestCRIReadOnlyVolumes(t *testing.T) {
	harness.CheckRoot(t)
	for _, f := range harness.Flavours(t) {
		t.Run(f.Name, func(t *testing.T) {
			cfgFile := filepath.Join(t.TempDir(), "pod-v2.toml")
			if err := os.WriteFile(cfgFile, []byte("BinaryName = \"/usr/sbin/runc\"\ntreat_ro_mounts_as_rro = \"Disabled\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			section := `plugins."io.containerd.cri.v1.runtime"`
			if f.Is16() {
				section = `plugins."io.containerd.grpc.v1.cri"`
			}
			extra := fmt.Sprintf("[%[1]s.containerd.runtimes.podcfg]\n  runtime_type = %[2]q\n  pod_annotations = [\"io.containerd.pod.v2.*\"]\n"+
				"  [%[1]s.containerd.runtimes.podcfg.options]\n    ConfigPath = %[3]q\n", section, harness.RuntimePod, cfgFile)
			c := harness.StartCRIWith(t, f, harness.CRIOptions{ExtraConfig: extra})
			if !harness.IsOurs(c.Runtime) {
				t.Fatalf("the shim's rro policy is this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
			}
			src := treeWithSubmount(t, c.Containerd)
			const probe = `touch /mnt/top 2>/dev/null; echo top=$?; touch /mnt/sub/f 2>/dev/null; echo sub=$?`
			for _, tc := range []struct {
				name, handler string
				annotations   map[string]string
				want          string
			}{
				{"README's handler (IfPossible)", "pod", nil, "top=1 sub=1"},
				{"ConfigPath handler (Disabled)", "podcfg", nil, "top=1 sub=0"},
				{"ConfigPath handler, pod annotation IfPossible", "podcfg", map[string]string{"io.containerd.pod.v2.rro": "IfPossible"}, "top=1 sub=1"},
			} {
				c.Handler = tc.handler
				cfg := c.PodConfig("rro-" + tc.handler)
				cfg.Annotations = tc.annotations
				pod := c.RunPod(t, cfg)
				cc := c.ContainerConfig(cfg, "a", "sleep", "1000")
				cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt", HostPath: src, Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE}}
				a := c.RunContainer(t, pod, cc)
				if got := strings.Join(strings.Fields(c.Exec(t, a, "sh", "-c", probe)), " "); got != tc.want {
					t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
				}
				if n := len(c.ShimProcesses(c.Runtime, "")) + len(c.ShimProcesses(harness.RuntimeRunc, "")); tc.handler == "podcfg" && n != 1 {
					t.Errorf("%s: %d shims, want ours alone", tc.name, n)
				}
				c.RemovePod(t, pod)
				c.CheckPodGone(t, pod, a)
			}
		})
	}
}
