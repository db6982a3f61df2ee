//go:build linux

package podproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
)

// Marker is argv[0] of the pod's process: the entry point (entry_linux_amd64.s)
// compares it byte for byte.
const Marker = "containerd-shim-pod-v2:pod"

// EntrySymbol is the entry point the linker must be given:
// go build -ldflags=-E=containerd_shim_pod_v2_entry.
const EntrySymbol = "containerd_shim_pod_v2_entry"

// maxHostname is the kernel's HOST_NAME_MAX.
const maxHostname = 64

// Config is what the pod's process is made of. An empty path joins nothing
// (the namespace of that type stays the shim's, the host's).
type Config struct {
	// Exe is the binary to run (default /proc/self/exe, the shim itself).
	Exe string
	// UserNS is the user namespace to join, first: the new namespaces are
	// created inside it, so containers that join it can join them.
	UserNS string
	// NetNS is the network namespace to join.
	NetNS string
	// NewIPC, NewUTS, NewPID create namespaces of those types; with NewPID
	// the pod's process is pid 1 of its PID namespace and reaps its orphans.
	NewIPC, NewUTS, NewPID bool
	// Hostname is set in the new UTS namespace (ignored without NewUTS).
	Hostname string
	// Sysctls are written, in order, once the namespaces are joined and
	// made, by root of the pod's user namespace. Which namespace a sysctl
	// belongs to is the caller's to check: one of a namespace the pod
	// shares with the host would change the host's.
	Sysctls []Sysctl
	// Cgroup, if not nil, is the directory of the cgroup v2 cgroup the pod's
	// process is born in (clone3's CLONE_INTO_CGROUP, for its starter, whose
	// child it is): it is never in another, and nothing is migrated.
	Cgroup *os.File
	// Tasks are a cgroup v1 cgroup's tasks files, one per hierarchy, open
	// for writing (at most 9): the starter, while it has one thread, moves
	// itself into each before anything else, and forks the pod's process
	// there. A thread that moves itself takes no cgroup-wide lock; a process
	// moved by pid waits for an RCU grace period.
	Tasks []*os.File
}

// Sysctl is a kernel parameter: Key in dotted (net.ipv4.ip_forward) or
// slashed form, as in an OCI spec.
type Sysctl struct {
	Key, Value string
}

// file is the sysctl's file under /proc/sys.
func (s Sysctl) file() string {
	return "/proc/sys/" + strings.ReplaceAll(s.Key, ".", "/")
}

// sysctlKey is what a sysctl key may hold: no "..", no NUL, nothing but
// lower-case words separated by dots or slashes (device names in net keys
// may hold digits, '-' and '_').
var sysctlKey = regexp.MustCompile(`^[a-zA-Z0-9_-]+([./][a-zA-Z0-9_-]+)*$`)

// Runner starts and waits for the short-lived starter child; the shim's
// reaper, so that its loop does not steal the starter's status.
type Runner interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) (int, error)
}

var (
	// ErrNoEntry: the binary was linked without the entry point: it started
	// the Go runtime instead of the pod's process.
	ErrNoEntry = errors.New("the binary was built without the pod process entry point (go build -ldflags=-E=" + EntrySymbol + "; make build does it)")
	// ErrUnsupported: no entry point is written for this architecture.
	ErrUnsupported = errors.New("the pod's own process is implemented for linux/amd64 only")
)

// Report steps, as entry_linux_amd64.s numbers them.
const (
	stepOK = iota
	stepArgs
	stepSetnsUser
	stepSetnsNet
	stepUnshare
	stepHostname
	stepSigmask
	stepFork
	stepSetID
	stepCgroup
	// stepNoEntry is written by the Go side of a binary without the entry point.
	stepNoEntry = 99
	// stepSysctl+2k is the k-th sysctl.
	stepSysctl = 1000
)

// StepError is a step of the starter that failed, with the kernel's errno.
type StepError struct {
	Step  string
	Errno syscall.Errno
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Errno) }
func (e *StepError) Unwrap() error { return e.Errno }

// Start starts the pod's process and returns its pid. The process is the
// caller's child (the starter forks it with CLONE_PARENT), so the caller's
// reaper collects its exit as it does any child's it did not Start: Wait is
// for the starter only. It ends on SIGKILL, SIGTERM or SIGINT.
func Start(r Runner, c Config) (int, error) {
	if !supported {
		return 0, ErrUnsupported
	}
	if err := c.check(); err != nil {
		return 0, err
	}
	exe := c.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	flags, files, err := c.open()
	defer closeAll(files)
	if err != nil {
		return 0, err
	}
	hostname := ""
	if c.NewUTS {
		hostname = c.Hostname
	}
	rp, wp, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("report pipe for the pod's process: %w", err)
	}
	defer rp.Close()
	args := []string{Marker, flags, hostname}
	for _, sc := range c.Sysctls {
		args = append(args, sc.file(), sc.Value)
	}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       args,
		Env:        []string{},
		Dir:        "/",
		ExtraFiles: append(append([]*os.File{wp}, files...), c.Tasks...),
	}
	if c.Cgroup != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(c.Cgroup.Fd())}
	}
	err = r.Start(cmd)
	wp.Close()
	if err != nil {
		return 0, fmt.Errorf("start the pod's process (%s): %w", exe, err)
	}
	var report [8]byte
	_, readErr := io.ReadFull(rp, report[:])
	status, waitErr := r.Wait(cmd)
	step := binary.NativeEndian.Uint32(report[0:4])
	value := binary.NativeEndian.Uint32(report[4:8])
	switch {
	case readErr != nil:
		return 0, fmt.Errorf("the starter of the pod's process (%s) ended with status %d and no report: %w", exe, status, readErr)
	case step == stepNoEntry:
		return 0, fmt.Errorf("start the pod's process with %s: %w", exe, ErrNoEntry)
	case step != stepOK:
		return 0, &StepError{Step: stepName(step, c), Errno: syscall.Errno(value)}
	case waitErr != nil:
		return 0, fmt.Errorf("wait for the starter of the pod's process: %w", waitErr)
	case status != 0 || value == 0:
		return 0, fmt.Errorf("the starter of the pod's process ended with status %d (pid %d)", status, value)
	}
	return int(value), nil
}

// maxTasks is how many tasks files the starter takes (FLAGS[5] is a digit).
const maxTasks = 9

func (c Config) check() error {
	if len(c.Tasks) > maxTasks {
		return fmt.Errorf("%d cgroup tasks files for the pod's process: at most %d", len(c.Tasks), maxTasks)
	}
	if len(c.Hostname) > maxHostname || strings.ContainsRune(c.Hostname, 0) {
		return fmt.Errorf("hostname %q: longer than %d bytes or holds a NUL", c.Hostname, maxHostname)
	}
	for _, sc := range c.Sysctls {
		if !sysctlKey.MatchString(sc.Key) || strings.Contains(sc.Key, "..") {
			return fmt.Errorf("sysctl %q: not a sysctl name", sc.Key)
		}
		if strings.ContainsRune(sc.Value, 0) {
			return fmt.Errorf("sysctl %s: value holds a NUL", sc.Key)
		}
	}
	return nil
}

// open opens the namespaces to join, in the order of the starter's fds 4
// and 5 (nil: none), and returns the flags argument (the last character is
// the number of tasks files, from fd 6).
func (c Config) open() (string, []*os.File, error) {
	flag := func(b bool) byte {
		if b {
			return '1'
		}
		return '0'
	}
	files := make([]*os.File, 2)
	for i, path := range []string{c.UserNS, c.NetNS} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return "", files, fmt.Errorf("open namespace for the pod's process: %w", err)
		}
		files[i] = f
	}
	flags := []byte{flag(c.UserNS != ""), flag(c.NetNS != ""), flag(c.NewIPC), flag(c.NewUTS), flag(c.NewPID), byte('0' + len(c.Tasks))}
	return string(flags), files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

func stepName(step uint32, c Config) string {
	switch step {
	case stepArgs:
		return "pod process arguments"
	case stepSetnsUser:
		return "join user namespace " + c.UserNS
	case stepSetnsNet:
		return "join network namespace " + c.NetNS
	case stepUnshare:
		return "create the pod's IPC, UTS and PID namespaces"
	case stepHostname:
		return fmt.Sprintf("set hostname %q", c.Hostname)
	case stepSigmask:
		return "block signals"
	case stepFork:
		return "fork the pod's process"
	case stepSetID:
		return "become root of user namespace " + c.UserNS
	case stepCgroup:
		return "move into the pod's cgroup"
	}
	if k := (int(step) - stepSysctl) / 2; step >= stepSysctl && k < len(c.Sysctls) {
		return fmt.Sprintf("sysctl %s=%s", c.Sysctls[k].Key, c.Sysctls[k].Value)
	}
	return fmt.Sprintf("pod process step %d", step)
}
