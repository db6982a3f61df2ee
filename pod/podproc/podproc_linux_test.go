//go:build linux

package podproc_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
)

// shim is the shim binary built with the entry point, as make build builds it.
var shim string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "podproc tests must run as root: they join and create namespaces")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "podproc-test-")
	if err != nil {
		panic(err)
	}
	shim = filepath.Join(dir, "containerd-shim-pod-v2")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-E="+podproc.EntrySymbol, "-o", shim,
		"github.com/podv2/containerd-shim-pod-v2/cmd/containerd-shim-pod-v2")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the shim with its entry point: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runner starts and waits for the starter with os/exec; the pod's process,
// the test's child through CLONE_PARENT, is reaped by stop.
type runner struct{}

func (runner) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (runner) Wait(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return -1, err
	}
	return cmd.ProcessState.ExitCode(), nil
}

// start starts a pod process and stops it (SIGKILL) when the test ends.
func start(t *testing.T, c podproc.Config) int {
	t.Helper()
	if c.Exe == "" {
		c.Exe = shim
	}
	pid, err := podproc.Start(runner{}, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Kill(pid, unix.SIGKILL)
		wait(t, pid)
	})
	return pid
}

// wait reaps the pod process (the test's child) and returns its status.
func wait(t *testing.T, pid int) (unix.WaitStatus, bool) {
	t.Helper()
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, 0, nil)
	if errors.Is(err, unix.ECHILD) {
		return ws, false // reaped already
	}
	if err != nil || got != pid {
		t.Fatalf("wait4(%d) = %d, %v", pid, got, err)
	}
	return ws, true
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	ino, err := pod.Inode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func nsOf(pid int, kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, kind) }

// nsenter runs a command in namespaces of pid.
func nsenter(t *testing.T, pid int, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPodProcessNamespaces(t *testing.T) {
	pid := start(t, podproc.Config{NewIPC: true, NewUTS: true, NewPID: true, Hostname: "pod-a"})
	for _, kind := range []string{"ipc", "uts", "pid"} {
		if nsInode(t, nsOf(pid, kind)) == nsInode(t, nsOf(os.Getpid(), kind)) {
			t.Errorf("the pod's process shares the test's %s namespace", kind)
		}
	}
	for _, kind := range []string{"user", "net", "mnt"} {
		if nsInode(t, nsOf(pid, kind)) != nsInode(t, nsOf(os.Getpid(), kind)) {
			t.Errorf("the pod's process has a %s namespace of its own; none was asked", kind)
		}
	}
	if got := nsenter(t, pid, "-u", "hostname"); got != "pod-a" {
		t.Errorf("hostname in the pod's UTS namespace = %q, want pod-a", got)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(status, []byte(fmt.Sprintf("NSpid:\t%d\t1\n", pid))) {
		t.Errorf("the pod's process is not pid 1 of its PID namespace:\n%s", status)
	}
	// It is the test's child (CLONE_PARENT), with no file of the starter's.
	if ppid := statField(t, pid, 4); ppid != strconv.Itoa(os.Getpid()) {
		t.Errorf("parent of the pod's process = %s, want the test %d", ppid, os.Getpid())
	}
	waitIdle(t, pid)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != 3 {
		var names []string
		for _, fd := range fds {
			l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			names = append(names, fd.Name()+"="+l)
		}
		t.Errorf("the pod's process holds %d fds, want 3 (stdio on /dev/null): %v", len(fds), names)
	}
}

// waitIdle waits until the pod's process sits in its loop: blocked in
// rt_sigtimedwait (128), after it closed its fds.
func waitIdle(t *testing.T, pid int) {
	t.Helper()
	var last string
	if !waitUntil(func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid))
		last = string(b)
		return err == nil && strings.HasPrefix(last, "128 ")
	}) {
		t.Fatalf("the pod's process never waited in rt_sigtimedwait: /proc/%d/syscall = %q", pid, last)
	}
}

// statField is field n (1-based) of /proc/pid/stat.
func statField(t *testing.T, pid, n int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command may hold spaces: fields start after its closing parenthesis.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	return strings.Fields(rest)[n-3]
}

// The new namespaces are created inside the pod's user namespace, which is
// joined first, next to the pod's network namespace.
func TestPodProcessInUserNamespace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pod")
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	ns, err := pod.CreatePinned(dir, pod.DirectRunner{}, pod.Request{NewUser: true, NewNet: true, UIDMappings: maps, GIDMappings: maps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.CleanupStateDir(dir) })
	pid := start(t, podproc.Config{UserNS: ns.UserPath, NetNS: ns.NetPath, NewIPC: true, NewUTS: true, NewPID: true, Hostname: "pod-u"})

	if got, want := nsInode(t, nsOf(pid, "user")), nsInode(t, ns.UserPath); got != want {
		t.Errorf("user namespace of the pod's process = %d, want the pod's %d", got, want)
	}
	if got, want := nsInode(t, nsOf(pid, "net")), nsInode(t, ns.NetPath); got != want {
		t.Errorf("network namespace of the pod's process = %d, want the pod's %d", got, want)
	}
	userIno := nsInode(t, ns.UserPath)
	for _, kind := range []string{"ipc", "uts", "pid"} {
		owner, err := pod.Owner(nsOf(pid, kind))
		if err != nil {
			t.Fatal(err)
		}
		if owner != userIno {
			t.Errorf("the pod's %s namespace is owned by user namespace %d, want the pod's %d", kind, owner, userIno)
		}
	}
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] != "100000" || f[2] != "65536" {
		t.Errorf("uid_map of the pod's process = %q", uidMap)
	}
	// Root of the pod's user namespace: host uid and gid 100000.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t100000\t100000\t100000\t100000\n", "Gid:\t100000\t100000\t100000\t100000\n"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("the pod's process is not root of its user namespace: want %q in\n%s", want, status)
		}
	}
	if got := nsenter(t, pid, "-u", "hostname"); got != "pod-u" {
		t.Errorf("hostname = %q, want pod-u", got)
	}
}

// An orphan of the pod's PID namespace is reparented to the pod's process,
// which reaps it: no zombie stays.
func TestPodProcessReapsOrphans(t *testing.T) {
	pid := start(t, podproc.Config{NewPID: true})
	fifo := filepath.Join(t.TempDir(), "release")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// sh starts a reader of the fifo in the background and exits: the reader
	// is orphaned in the pod's PID namespace.
	nsenter(t, pid, "-p", "--", "sh", "-c", "cat "+fifo+" >/dev/null 2>&1 </dev/null & exit 0")
	childrenFile := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	kids := func() string {
		b, err := os.ReadFile(childrenFile)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if !waitUntil(func() bool { return kids() != "" }) {
		t.Fatal("the orphan never became the pod process's child")
	}
	orphan := kids()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close() // the orphan reads EOF and exits
	if !waitUntil(func() bool { return kids() == "" }) {
		t.Fatalf("orphan %s was not reaped: children of the pod's process = %q, its state %s",
			orphan, kids(), statFieldOrGone(orphan))
	}
}

func statFieldOrGone(pid string) string {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "gone"
	}
	return string(data)
}

func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// SIGTERM ends the pod's process with status 0, as the pause container does;
// SIGKILL ends it too (it is pid 1: nothing else is delivered from outside).
func TestPodProcessSignals(t *testing.T) {
	for _, tc := range []struct {
		sig        unix.Signal
		withPidNS  bool
		wantSignal bool
	}{
		{unix.SIGTERM, true, false},
		{unix.SIGINT, false, false},
		{unix.SIGKILL, true, true},
	} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			pid, err := podproc.Start(runner{}, podproc.Config{Exe: shim, NewPID: tc.withPidNS})
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Kill(pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			ws, _ := wait(t, pid)
			if tc.wantSignal {
				if !ws.Signaled() || ws.Signal() != tc.sig {
					t.Fatalf("status %#x, want killed by %v", ws, tc.sig)
				}
				return
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("status %#x, want exit 0", ws)
			}
		})
	}
}

// A step that fails is reported by name with the kernel's error, and no
// pod process is left.
func TestPodProcessStepError(t *testing.T) {
	notNS := filepath.Join(t.TempDir(), "not-a-namespace")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := podproc.Start(runner{}, podproc.Config{Exe: shim, NetNS: notNS, NewIPC: true})
	var se *podproc.StepError
	if !errors.As(err, &se) || se.Errno != unix.EINVAL || !strings.Contains(err.Error(), "join network namespace "+notNS) {
		t.Fatalf("error = %v, want a StepError naming the network namespace, EINVAL", err)
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Fatalf("a child is left: wait4 = %d, %v", pid, err)
	}
}

// A binary linked without the entry point refuses clearly, never runs the
// pod without its namespaces. The test binary is one.
func TestWithoutEntryPoint(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, err = podproc.Start(runner{}, podproc.Config{Exe: self, NewPID: true})
	if !errors.Is(err, podproc.ErrNoEntry) || !strings.Contains(err.Error(), "-ldflags=-E="+podproc.EntrySymbol) {
		t.Fatalf("error = %v, want ErrNoEntry naming the linker flag", err)
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Fatalf("a child is left: wait4 = %d, %v", pid, err)
	}
}

func TestHostnameTooLong(t *testing.T) {
	_, err := podproc.Start(runner{}, podproc.Config{Exe: shim, NewUTS: true, Hostname: strings.Repeat("h", 65)})
	if err == nil {
		t.Fatal("a 65-byte hostname was accepted")
	}
}

// The pod's process costs a few pages: it never starts the Go runtime.
func TestPodProcessMemory(t *testing.T) {
	pid := start(t, podproc.Config{NewIPC: true, NewUTS: true, NewPID: true, Hostname: "mem"})
	waitIdle(t, pid)
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	kb := func(key string) int {
		for _, l := range strings.Split(string(rollup), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
		t.Fatalf("no %s in smaps_rollup:\n%s", key, rollup)
		return 0
	}
	threads := statField(t, pid, 20)
	t.Logf("pod process: Rss %d kB, Pss %d kB, threads %s (%s)", kb("Rss"), kb("Pss"), threads, runtime.GOARCH)
	if threads != "1" {
		t.Errorf("the pod's process runs %s threads: it started the Go runtime", threads)
	}
	if rss := kb("Rss"); rss > 512 {
		t.Errorf("the pod's process holds %d kB resident, want at most 512", rss)
	}
}

// Sysctls are written in the pod's network and IPC namespaces, by root of
// the pod's user namespace (host root may not write those of an IPC
// namespace owned by another user namespace); the host's stay as they were.
func TestPodProcessSysctls(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pod")
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	ns, err := pod.CreatePinned(dir, pod.DirectRunner{}, pod.Request{NewUser: true, NewNet: true, UIDMappings: maps, GIDMappings: maps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.CleanupStateDir(dir) })
	hostPort := readFile(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start")
	hostMsgmax := readFile(t, "/proc/sys/kernel/msgmax")
	pid := start(t, podproc.Config{UserNS: ns.UserPath, NetNS: ns.NetPath, NewIPC: true, NewUTS: true, NewPID: true,
		Sysctls: []podproc.Sysctl{
			{Key: "net.ipv4.ip_unprivileged_port_start", Value: "0"},
			{Key: "net/ipv4/ping_group_range", Value: "0 65535"},
			{Key: "kernel.msgmax", Value: "16385"},
		}})
	for _, tc := range []struct {
		ns         []string
		file, want string
	}{
		{[]string{"--net"}, "/proc/sys/net/ipv4/ip_unprivileged_port_start", "0"},
		// gids as the pod's user namespace maps them
		{[]string{"--user", "--net"}, "/proc/sys/net/ipv4/ping_group_range", "0\t65535"},
		{[]string{"--ipc"}, "/proc/sys/kernel/msgmax", "16385"},
	} {
		if got := nsenter(t, pid, append(tc.ns, "cat", tc.file)...); got != tc.want {
			t.Errorf("%s in the pod = %q, want %q", tc.file, got, tc.want)
		}
	}
	if got := readFile(t, "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != hostPort {
		t.Errorf("the host's ip_unprivileged_port_start changed: %s -> %s", hostPort, got)
	}
	if got := readFile(t, "/proc/sys/kernel/msgmax"); got != hostMsgmax {
		t.Errorf("the host's msgmax changed: %s -> %s", hostMsgmax, got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestPodProcessSysctlErrors(t *testing.T) {
	_, err := podproc.Start(runner{}, podproc.Config{Exe: shim, NewIPC: true,
		Sysctls: []podproc.Sysctl{{Key: "kernel.msgmax", Value: "8192"}, {Key: "kernel.no_such_sysctl", Value: "1"}}})
	var se *podproc.StepError
	if !errors.As(err, &se) || se.Errno != unix.ENOENT || !strings.Contains(err.Error(), "sysctl kernel.no_such_sysctl=1") {
		t.Fatalf("error = %v, want a StepError naming kernel.no_such_sysctl, ENOENT", err)
	}
	for _, key := range []string{"../../etc/passwd", "net..ipv4", "", "kernel.msgmax\x00"} {
		if _, err := podproc.Start(runner{}, podproc.Config{Exe: shim, NewIPC: true, Sysctls: []podproc.Sysctl{{Key: key, Value: "1"}}}); err == nil {
			t.Errorf("sysctl key %q accepted", key)
		}
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); !errors.Is(err, unix.ECHILD) {
		t.Fatalf("a child is left: wait4 = %d, %v", pid, err)
	}
}

// v1Cgroup makes a cgroup of the test's own in the host's cgroup v1 pids
// hierarchy, removed when the test ends. The tasks-file path is cgroup v1's:
// on a host without v1 the test is skipped (make test-cgroup2 runs the v2
// path, CLONE_INTO_CGROUP, on a cgroup v2 kernel). A named hierarchy of the
// test's own is no way out: unmounted while a removed child is still being
// released, it lingers in every process's /proc/PID/cgroup, where runc's and
// containerd's cgroup libraries choke on it.
func v1Cgroup(t *testing.T) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil || st.Type == unix.CGROUP2_SUPER_MAGIC {
		t.Skip("cgroup v1 is not in use here")
	}
	cgroup := filepath.Join("/sys/fs/cgroup/pids", fmt.Sprintf("podproc-test-%d", os.Getpid()))
	if err := os.Mkdir(cgroup, 0o755); err != nil {
		t.Fatalf("make a v1 cgroup for the test: %v", err)
	}
	t.Cleanup(func() {
		// The pod's process is gone by now (start's cleanup ran first).
		if err := unix.Rmdir(cgroup); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
	})
	return cgroup
}

// On cgroup v1 the starter moves itself into the pod's cgroup through the
// tasks files it is given, so the pod's process is born there; the starter's
// parent (the shim) stays where it was.
func TestPodProcessBornInV1Cgroup(t *testing.T) {
	cg := v1Cgroup(t)
	tasks, err := os.OpenFile(filepath.Join(cg, "tasks"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tasks.Close()
	pid := start(t, podproc.Config{NewPID: true, Tasks: []*os.File{tasks}})
	procs, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(procs)); len(got) != 1 || got[0] != strconv.Itoa(pid) {
		t.Errorf("the pod's cgroup holds %q, want the pod's process %d alone", got, pid)
	}
	waitIdle(t, pid)
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err != nil || len(fds) != 3 {
		t.Errorf("the pod's process holds %d fds (%v), want 3: no tasks file of the starter's", len(fds), err)
	}
}

// A tasks file the starter cannot write to fails the start, naming the step,
// and leaves no process.
func TestPodProcessCgroupError(t *testing.T) {
	cg := v1Cgroup(t)
	readOnly, err := os.Open(filepath.Join(cg, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer readOnly.Close()
	_, err = podproc.Start(runner{}, podproc.Config{Exe: shim, NewPID: true, Tasks: []*os.File{readOnly}})
	var se *podproc.StepError
	if !errors.As(err, &se) || se.Errno != unix.EBADF || !strings.Contains(err.Error(), "move into the pod's cgroup") {
		t.Fatalf("error = %v, want a StepError naming the cgroup move, EBADF", err)
	}
	if procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs")); len(procs) != 0 {
		t.Errorf("the cgroup holds %q after a failed start", procs)
	}
	many := make([]*os.File, 10)
	for i := range many {
		many[i] = readOnly
	}
	if _, err := podproc.Start(runner{}, podproc.Config{Exe: shim, Tasks: many}); err == nil || !strings.Contains(err.Error(), "at most 9") {
		t.Errorf("ten tasks files: error = %v, want one naming the limit", err)
	}
}
