//go:build linux

package mounts

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes mounts and user namespaces")
	}
}

// userns returns a user namespace mapping 0..65535 to 100000.. (held by an
// open file; the child that made it is gone).
func userns(t *testing.T) *os.File {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func ownerOf(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// attachAt attaches tree onto dir and unmounts it when the test ends.
func attachAt(t *testing.T, tree *os.File, dir string) {
	t.Helper()
	target, err := os.OpenFile(dir, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := Attach(tree, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

// A host directory owned by 0:0, id-mapped through 0:100000:65536, is seen
// from the host as owned by 100000 (what the container's root is), and a file
// the host makes through the mount as 100000 lands on disk as 0. With
// readOnly and recursive, a mount below the source is read-only too.
func TestCloneIDMapped(t *testing.T) {
	needRoot(t)
	if !KernelIDMap() {
		t.Fatal("the kernel has no mount_setattr: the shim's id-mapped mounts need Linux >= 5.12")
	}
	ns := userns(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()

	tree, err := CloneIDMapped(src, false, false, false, ns)
	if err != nil {
		t.Fatal(err)
	}
	attachAt(t, tree, dst)
	tree.Close()
	if uid, gid := ownerOf(t, filepath.Join(dst, "f")); uid != 100000 || gid != 100000 {
		t.Errorf("through the id-mapped mount f is %d:%d, want 100000:100000", uid, gid)
	}
	if err := os.Chown(filepath.Join(dst, "f"), 100001, 100001); err != nil {
		t.Fatal(err)
	}
	if uid, gid := ownerOf(t, filepath.Join(src, "f")); uid != 1 || gid != 1 {
		t.Errorf("chown 100001 through the mount gave %d:%d on disk, want 1:1", uid, gid)
	}

	// Read-only, recursively: a tmpfs mounted below the source.
	sub := filepath.Join(src, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	ro := t.TempDir()
	tree, err = CloneIDMapped(src, true, true, true, ns)
	if err != nil {
		t.Fatal(err)
	}
	attachAt(t, tree, ro)
	tree.Close()
	for _, p := range []string{filepath.Join(ro, "new"), filepath.Join(ro, "sub", "new")} {
		if err := os.WriteFile(p, nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write %s: %v, want EROFS", p, err)
		}
	}
	if uid, _ := ownerOf(t, filepath.Join(ro, "sub")); uid != 100000 {
		t.Errorf("ridmap: the submount's root is %d through the mount, want 100000", uid)
	}
}

// A file system that cannot be id-mapped (sysfs) is ErrIDMapUnsupported,
// naming the source; a missing source is an error naming it too.
func TestCloneIDMappedRefused(t *testing.T) {
	needRoot(t)
	ns := userns(t)
	_, err := CloneIDMapped("/sys/kernel", false, false, false, ns)
	if !errors.Is(err, ErrIDMapUnsupported) {
		t.Errorf("id-map /sys/kernel: %v, want ErrIDMapUnsupported", err)
	}
	_, err = CloneIDMapped("/nonexistent/x", false, false, false, ns)
	if err == nil || errors.Is(err, ErrIDMapUnsupported) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("id-map a missing source: %v, want ENOENT", err)
	}
}
