//go:build linux

package pod

import (
	"bytes"
	"github.com/moby/sys/mountinfo"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// needRoot skips tests that make namespaces and mounts when not root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and mounts")
	}
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found on PATH (it comes with Debian's util-linux / iproute2, which the tests expect): %v", name, err)
	}
	return p
}

var podMaps = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

// stateDir is a fresh pod state dir, cleaned up after the test.
func stateDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { CleanupStateDir(dir) })
	return dir
}

// mountFSType is the file system mounted at path, "" if none.
func mountFSType(t testing.TB, path string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return ""
	}
	real = filepath.Join(real, filepath.Base(path))
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	typ := ""
	for _, m := range ms {
		if m.Mountpoint == real {
			typ = m.FSType
		}
	}
	return typ
}

// mountsBelow counts the mounts at or below dir.
func mountsBelow(t testing.TB, dir string) int {
	t.Helper()
	ms, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

// children lists the pids whose parent is this process (zombies included).
func children(t testing.TB) []int {
	t.Helper()
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// noChildren fails if this process has children left, after a short grace.
func noChildren(t testing.TB) {
	t.Helper()
	var left []int
	for range 50 {
		if left = children(t); len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("children left behind: %v", left)
}

// run runs a command and returns its trimmed stdout, failing on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
