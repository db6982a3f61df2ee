package harness

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Process is a process of the host.
type Process struct {
	PID     int
	Cmdline []string
}

// Processes lists the host's processes (zombies excluded) whose command line satisfies match.
func Processes(match func(argv []string) bool) []Process {
	ents, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !match(argv) || !ProcessAlive(pid) {
			continue
		}
		out = append(out, Process{PID: pid, Cmdline: argv})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// ProcessesWithArg lists processes one of whose arguments is exactly arg (e.g. a containerd's socket path).
func ProcessesWithArg(arg string) []Process {
	return Processes(func(argv []string) bool {
		for _, a := range argv[1:] {
			if a == arg {
				return true
			}
		}
		return false
	})
}

// ShimProcesses lists the shim processes of runtime serving this containerd (`pgrep -f <shim binary>`, narrowed to
// the ones whose -address is this daemon's socket, since other daemons on the host may run shims too). With id, only
// the shim started for that container id (-id ID).
func (c *Containerd) ShimProcesses(runtime, id string) []Process {
	bin := ShimBinaryName(runtime)
	return Processes(func(argv []string) bool {
		if filepath.Base(argv[0]) != bin {
			return false
		}
		addr, pid := flagValue(argv, "-address"), flagValue(argv, "-id")
		return addr == c.Address && (id == "" || pid == id)
	})
}

func flagValue(argv []string, name string) string {
	for i, a := range argv {
		if (a == name || a == "-"+name) && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// ProcessAlive says whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// Mount is a line of /proc/self/mountinfo.
type Mount struct {
	MountPoint string
	FSType     string
	Source     string
	Options    string
}

// Mounts reads /proc/self/mountinfo.
func Mounts() []Mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		m := Mount{MountPoint: unescapeOctal(fields[4])}
		for i, f := range fields {
			if f == "-" && i+3 < len(fields) {
				m.FSType, m.Source, m.Options = fields[i+1], unescapeOctal(fields[i+2]), fields[i+3]
				break
			}
		}
		out = append(out, m)
	}
	return out
}

// MountsUnder lists the mount points at or below dir, deepest first.
func MountsUnder(dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range Mounts() {
		if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
			out = append(out, m.MountPoint)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Bundle is the bundle directory containerd made for container id.
func (c *Containerd) Bundle(id string) string {
	return filepath.Join(c.State, "io.containerd.runtime.v2.task", c.Namespace, id)
}

// RootfsMounts lists mounts at or below the container's rootfs.
func (c *Containerd) RootfsMounts(id string) []string {
	return MountsUnder(filepath.Join(c.Bundle(id), "rootfs"))
}

// RuncStateDir is runc's state directory for container id: both shims run runc with --root
// /run/containerd/runc/<namespace> unless options say otherwise.
func (c *Containerd) RuncStateDir(id string) string {
	return filepath.Join(RuncRoot, c.Namespace, id)
}

// ShimSocketAddress is the address the shim of the runtime under test for group key (the container id for a
// container alone in its pod) listens on; see ShimSocketAddressOf.
func (c *Containerd) ShimSocketAddress(key string) string {
	return c.ShimSocketAddressOf(c.Runtime, key)
}

// ShimSocketAddressOf is the address runtime's shim for group key listens on: the reference's is
// unix:///run/containerd/s/<hex sha256(<containerd address>/<namespace>/<key>)>; ours hashes its runtime name and a
// NUL before the same path, so that the two never share a socket.
func (c *Containerd) ShimSocketAddressOf(runtime, key string) string {
	if IsOurs(runtime) {
		return "unix://" + shimSocketPath(c.Address, c.Namespace, key)
	}
	sum := sha256.Sum256([]byte(filepath.Join(c.Address, c.Namespace, key)))
	return fmt.Sprintf("unix://%s/%x", ShimSocketDir, sum)
}

// shimSocketPath is the socket file of our shim serving group key in namespace ns of the containerd at address.
func shimSocketPath(address, ns, key string) string {
	sum := sha256.Sum256([]byte(RuntimePod + "\x00" + filepath.Join(address, ns, key)))
	return fmt.Sprintf("%s/%x", ShimSocketDir, sum)
}

// PodStateDir is the state directory of our shim's pod (group key) in namespace ns of the containerd at address: it
// is named after the pod's socket.
func PodStateDir(address, ns, key string) string {
	return filepath.Join(PodStateRoot, ns, filepath.Base(shimSocketPath(address, ns, key)))
}

// ShimSockets lists the socket files in /run/containerd/s.
func ShimSockets() []string {
	ents, _ := os.ReadDir(ShimSocketDir)
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(ShimSocketDir, e.Name()))
	}
	return out
}

// Exists says whether path exists (without following a final symlink).
func Exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// WaitUntil polls cond every 50 ms until it holds or timeout passes, and says whether it held.
func WaitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Eventually fails t unless cond holds within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitUntil(timeout, cond) {
		t.Fatalf("after %v: %s", timeout, what)
	}
}

// Leftovers lists what remains of container id: containerd's records of it (container, task), mounts at its rootfs,
// its bundle directory, runc's state directory, a shim process started with -id id, and (when groupKey is not
// empty) the socket file of the shim of that group key.
func (c *Containerd) Leftovers(id, groupKey string) []string {
	var left []string
	if out, _, code := c.Ctr("containers", "ls", "-q"); code == 0 && containsLine(out, id) {
		left = append(left, "containerd still lists container "+id)
	}
	if out, _, code := c.Ctr("tasks", "ls", "-q"); code == 0 && containsLine(out, id) {
		left = append(left, "containerd still lists task "+id)
	}
	for _, m := range c.RootfsMounts(id) {
		left = append(left, "mount "+m)
	}
	if Exists(c.Bundle(id)) {
		left = append(left, "bundle "+c.Bundle(id))
	}
	if Exists(c.RuncStateDir(id)) {
		left = append(left, "runc state "+c.RuncStateDir(id))
	}
	for _, p := range c.ShimProcesses(c.Runtime, id) {
		left = append(left, fmt.Sprintf("shim process %d %q", p.PID, p.Cmdline))
	}
	if groupKey != "" {
		if sock := strings.TrimPrefix(c.ShimSocketAddress(groupKey), "unix://"); Exists(sock) {
			left = append(left, "shim socket "+sock)
		}
	}
	return left
}

// CheckGone fails t unless nothing of container id is left (see Leftovers) within 10 s.
func (c *Containerd) CheckGone(t testing.TB, id, groupKey string) {
	t.Helper()
	var left []string
	if !WaitUntil(10*time.Second, func() bool { left = c.Leftovers(id, groupKey); return len(left) == 0 }) {
		t.Fatalf("container %s left behind:\n  %s", id, strings.Join(left, "\n  "))
	}
}

func containsLine(out, s string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == s {
			return true
		}
	}
	return false
}

// RuncStatus is runc's own status of container id ("created", "running", "paused", "stopped"), "" if runc does not
// know it.
func (c *Containerd) RuncStatus(t testing.TB, id string) string {
	t.Helper()
	out, err := exec.Command("runc", "--root", filepath.Join(RuncRoot, c.Namespace), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("runc state %s: %v: %q", id, err, out)
	}
	return st.Status
}

// FDs lists the open file descriptors of process pid, each as "N -> target" (the target of /proc/PID/fd/N).
func FDs(pid int) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		out = append(out, e.Name()+" -> "+target)
	}
	return out, nil
}

// CgroupDirs lists the directories of cgroup path (as a spec's cgroupsPath, e.g. /<namespace>/<id>) that exist, in
// every v1 hierarchy and the unified one.
func CgroupDirs(path string) []string {
	path = filepath.Clean("/" + path)
	var out []string
	if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", path)); err == nil && st.IsDir() && Exists("/sys/fs/cgroup/cgroup.controllers") {
		out = append(out, filepath.Join("/sys/fs/cgroup", path))
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + path)
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	return out
}
