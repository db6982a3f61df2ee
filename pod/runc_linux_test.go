//go:build linux

package pod

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcBundle makes a bundle whose rootfs is busybox-static, owned by the
// pod's mapped root (a rootfs owned by host root is read-only in a user
// namespace), in a directory the mapped root can reach.
func runcBundle(t *testing.T) (runc, bundle string) {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("busybox-static not installed")
	}
	base, err := os.MkdirTemp("", "pod-runc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle = filepath.Join(base, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "ip", "readlink", "grep", "ls"} {
		os.Symlink("busybox", filepath.Join(rootfs, "bin", applet))
	}
	run(t, "chown", "-R", "100000:100000", rootfs)
	return runc, bundle
}

// runcSpec is `runc spec` with the given namespaces and mappings.
func runcSpec(t *testing.T, runc string, script string) *specs.Spec {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(runc, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/sh", "-c", script}
	spec.Root.Readonly = false
	return &spec
}

// runcRun runs the bundle's container to its end and returns its output.
func runcRun(t *testing.T, runc, bundle string, spec *specs.Spec) (string, error) {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	id := fmt.Sprintf("podtest-%d", os.Getpid())
	cmd := exec.Command(runc, "--root", root, "run", "--bundle", bundle, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	exec.Command(runc, "--root", root, "delete", "--force", id).Run()
	return out.String(), err
}

// The point of the pod: runc 1.1.5 runs a container that joins the pinned
// user and network namespaces by path, sees the pod's mappings, a network
// namespace with lo up, and can mount its own sysfs.
func TestRuncJoinsPod(t *testing.T) {
	needRoot(t)
	runc, bundle := runcBundle(t)
	dir := stateDir(t)
	p, err := New("pa", dir, DirectRunner{})
	if err != nil {
		t.Fatal(err)
	}
	script := `cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/self/ns/net; ip -o link; grep ' /sys ' /proc/self/mounts`
	spec := runcSpec(t, runc, script)
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, nsEntry(specs.UserNamespace, ""))
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = podMaps, podMaps
	// runc spec lists a new network namespace already.
	if err := p.Join("a", spec); err != nil {
		t.Fatal(err)
	}
	defer p.Leave("a")
	ns, _ := p.Namespaces()

	out, err := runcRun(t, runc, bundle, spec)
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	userIno, _ := Inode(ns.UserPath)
	netIno, _ := Inode(ns.NetPath)
	for _, want := range []string{
		"0     100000      65536",
		"user:[" + strconv.FormatUint(userIno, 10) + "]",
		"net:[" + strconv.FormatUint(netIno, 10) + "]",
		"sysfs /sys sysfs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "lo: <LOOPBACK,UP") {
		t.Errorf("lo is not up in the container:\n%s", out)
	}
}
