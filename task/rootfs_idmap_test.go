package task

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/podv2/containerd-shim-pod-v2/api/types"
	"golang.org/x/sys/unix"
)

func TestIDMapOptions(t *testing.T) {
	uids, gids, rest, err := idmapOptions([]string{"index=off", "uidmap=0:100000:65536", "gidmap=0:200000:1,1:300000:10", "lowerdir=/a"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(uids, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}) ||
		!slices.Equal(gids, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1}, {ContainerID: 1, HostID: 300000, Size: 10}}) ||
		!slices.Equal(rest, []string{"index=off", "lowerdir=/a"}) {
		t.Errorf("got %v %v %v", uids, gids, rest)
	}
	if uids, _, rest, err := idmapOptions([]string{"lowerdir=/a"}); err != nil || uids != nil || len(rest) != 1 {
		t.Errorf("no mappings: %v %v %v", uids, rest, err)
	}
	for _, bad := range [][]string{
		{"uidmap=0:100000:65536"},
		{"uidmap=0:100000", "gidmap=0:1:1"},
		{"uidmap=0:x:1", "gidmap=0:1:1"},
		{"uidmap=0:1:0", "gidmap=0:1:1"},
		{"uidmap=", "gidmap=0:1:1"},
	} {
		if _, _, _, err := idmapOptions(bad); err == nil {
			t.Errorf("idmapOptions(%q) accepted", bad)
		}
	}
}

// testUserns is a userns func making user namespaces in a child, for tests.
func testUserns(t *testing.T) func(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	return func(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
		conv := func(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
			var out []syscall.SysProcIDMap
			for _, x := range m {
				out = append(out, syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)})
			}
			return out
		}
		cmd := exec.Command("/bin/sleep", "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: conv(uids), GidMappings: conv(gids), Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		return os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	}
}

func statOwner(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// A snapshot's overlay with uidmap= and gidmap= is mounted with its lower
// layers id-mapped (a root-owned file of a layer is the mapped root's), the
// staging mount gone once the overlay is up; a bind with them is an
// id-mapped bind. Without what id-mapping needs, they are refused.
func TestMountIDMappedRootfs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root (mount, user namespaces)")
	}
	dir := t.TempDir()
	snap := filepath.Join(dir, "snapshots")
	var lowers []string
	for i := 1; i <= 3; i++ {
		l := filepath.Join(snap, fmt.Sprint(i), "fs")
		if err := os.MkdirAll(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("layer%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append([]string{l}, lowers...)
	}
	upper, work := filepath.Join(snap, "4", "fs"), filepath.Join(snap, "4", "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stage := filepath.Join(dir, "pod", "mounts", "c")
	idm := &rootfsIDMap{stage: stage, userns: testUserns(t)}
	maps := []string{"uidmap=0:100000:65536", "gidmap=0:100000:65536"}

	target := filepath.Join(dir, "rootfs")
	opts := append([]string{"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(lowers, ":")}, maps...)
	if err := mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target, idm); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if got := statOwner(t, filepath.Join(target, fmt.Sprintf("layer%d", i))); got != "100000:100000" {
			t.Errorf("layer%d is %s through the overlay, want 100000:100000", i, got)
		}
	}
	if ents, err := os.ReadDir(stage); err != nil || len(ents) != 0 {
		t.Errorf("staging left in %s: %v %v", stage, ents, err)
	}
	if err := unmountRootfs(target); err != nil {
		t.Fatal(err)
	}

	bindSrc := lowers[0]
	if err := mountRootfs([]*types.Mount{{Type: "bind", Source: bindSrc, Options: append([]string{"rbind", "ro"}, maps...)}}, target, idm); err != nil {
		t.Fatal(err)
	}
	if got := statOwner(t, filepath.Join(target, "layer3")); got != "100000:100000" {
		t.Errorf("through the id-mapped bind layer3 is %s, want 100000:100000", got)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); err == nil {
		t.Error("a read-only id-mapped bind is writable")
	}
	if err := unmountRootfs(target); err != nil {
		t.Fatal(err)
	}

	err := mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target, nil)
	if err == nil || !strings.Contains(err.Error(), "uidmap") {
		t.Errorf("id-mapped layers without a pod: %v", err)
	}
	err = mountRootfs([]*types.Mount{{Type: "overlay", Source: "overlay", Options: opts[:len(opts)-1]}}, target, idm)
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Errorf("uidmap without gidmap: %v", err)
	}
	if isMountPoint(t, target) {
		t.Error("a refused mount left the rootfs mounted")
	}
}
