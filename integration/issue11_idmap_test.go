package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

var podMapping = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

// hostVolume is a directory of the host owned by host root (0:0, 0755) holding a root-owned file.
func hostVolume(t *testing.T, c *harness.Containerd, name string) string {
	t.Helper()
	dir := filepath.Join(c.Dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host-file"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func hostOwner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// idmappedContainer is a container of a user-namespaced pod (mapping 0:100000:65536) with vol at /home, id-mapped
// with the pod's mapping (the form containerd's CRI gives every volume of a hostUsers: false pod), through the Go
// client; binary is the runtime (empty: runc on $PATH).
func idmappedContainer(ctx context.Context, t *testing.T, cl *client.Client, c *harness.Containerd, id, vol, binary string, userns bool, script string) (*clientContainer, error) {
	t.Helper()
	// /home is in the image: a mount point the runtime need not make in a rootfs the container's root cannot write.
	m := specs.Mount{Destination: "/home", Type: "bind", Source: vol, Options: []string{"rbind", "rw"},
		UIDMappings: podMapping, GIDMappings: podMapping}
	opts := []oci.SpecOpts{oci.WithMounts([]specs.Mount{m})}
	if userns {
		opts = append(opts, oci.WithUserNamespace(podMapping, podMapping))
	}
	var runtimeOpts any
	if binary != "" {
		runtimeOpts = &runcoptions.Options{BinaryName: binary}
	}
	return newClientTask(ctx, t, cl, c, containerSpec{id: id, args: []string{"sh", "-c", script}, runtimeOpts: runtimeOpts,
		annotations: map[string]string{harness.GroupAnnotation(c.Runtime): id}, specOpts: opts})
}

// Issue 11, item 2: in a pod with the mapping 0:100000:65536, a host directory owned by host root, mounted id-mapped,
// is seen as root's inside and written as root, and the file written is host root's on the host. With Debian's runc
// 1.1.5, which ignores the request, the shim makes the id-mapped mount (logged as such); with runc 1.4 the runtime
// does (the shim passes the mount on). Nothing is left: no staged mount, no pod state.
func TestIDMappedVolume(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("id-mapped mounts made by the shim are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		userNamespaceReachable(t, c)
		runc14 := harness.Runc14(t)
		cl, ctx := newClient(t, c)
		const script = `cat /proc/self/uid_map; stat -c %u:%g /home /home/host-file; echo hi > /home/new && echo wrote; id -u`
		for _, rt := range []struct {
			sub, name, binary, log string
		}{
			{"shim-made", "runc 1.1.5, shim-made", "", "id-mapped mount made by the shim"},
			{"runtime-made", "runc 1.4, runtime-made", runc14, "id-mapped mounts are the runtime's"},
		} {
			t.Run(rt.sub, func(t *testing.T) {
				vol := hostVolume(t, c, "vol-"+c.ID("v"))
				id := c.ID("idmap")
				cc, err := idmappedContainer(ctx, t, cl, c, id, vol, rt.binary, true, script)
				if err != nil {
					t.Fatalf("%s: NewTask: %v", rt.name, err)
				}
				// Once the runtime made the container, which has its own bind, nothing staged is left mounted.
				if left := harness.MountsUnder(filepath.Join(harness.PodStateDir(c.Address, c.Namespace, id), "mounts")); len(left) > 0 {
					t.Errorf("%s: staged mounts left after create: %v", rt.name, left)
				}
				if err := cc.task.Start(ctx); err != nil {
					t.Fatalf("%s: Start: %v", rt.name, err)
				}
				code := cc.finish(ctx, t, 30*time.Second)
				want := "0 100000 65536 0:0 0:0 wrote 0"
				if got := strings.Join(strings.Fields(cc.stdout.String()), " "); code != 0 || got != want {
					t.Errorf("%s: exit %d, output %q (stderr %q), want %q", rt.name, code, got, cc.stderr.String(), want)
				}
				if uid, gid := hostOwner(t, filepath.Join(vol, "new")); uid != 0 || gid != 0 {
					t.Errorf("%s: the file written as the container's root is %d:%d on the host, want 0:0", rt.name, uid, gid)
				}
				if !c.LogContains(rt.log) {
					t.Errorf("%s: the shim did not log %q", rt.name, rt.log)
				}
				if err := cc.c.Delete(ctx, client.WithSnapshotCleanup); err != nil {
					t.Fatal(err)
				}
				c.CheckGone(t, id, id)
				if dir := harness.PodStateDir(c.Address, c.Namespace, id); harness.Exists(dir) {
					t.Errorf("%s: pod state %s is left", rt.name, dir)
				}
			})
		}
	})
}

// Issue 11, item 2: what the shim cannot make is refused clearly, with InvalidArgument naming the mount, and the pod's
// shim goes on: an id-mapped mount in a container without a user namespace, and one of a file system that cannot be
// id-mapped (sysfs).
func TestIDMappedVolumeRefused(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("id-mapped mounts made by the shim are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		userNamespaceReachable(t, c)
		cl, ctx := newClient(t, c)
		for _, tc := range []struct {
			name, vol string
			userns    bool
			want      string
		}{
			{"no user namespace", hostVolume(t, c, "vol-nouserns"), false, "no user namespace"},
			{"sysfs", "/sys/kernel", true, "does not support id-mapped mounts"},
		} {
			id := c.ID("refused")
			_, err := idmappedContainer(ctx, t, cl, c, id, tc.vol, "", tc.userns, "true")
			if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/home") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: NewTask: %v; want InvalidArgument naming /home and %q", tc.name, err, tc.want)
			}
			harness.Eventually(t, 10*time.Second, "the refused container's shim exits", func() bool { return len(c.ShimProcesses(c.Runtime, id)) == 0 })
			if dir := harness.PodStateDir(c.Address, c.Namespace, id); harness.Exists(dir) {
				t.Errorf("%s: pod state %s is left", tc.name, dir)
			}
		}
	})
}
