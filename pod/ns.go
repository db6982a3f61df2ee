//go:build linux

package pod

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// Why the shim creates the user and network namespaces together, in one
// child cloned with CLONE_NEWUSER|CLONE_NEWNET:
//
//   - A network namespace is owned by the user namespace its creator was in.
//     runc joins a container's user namespace first and its other namespaces
//     after; once in the pod's user namespace it has no capability over a
//     network namespace owned by the host's, and setns(net) fails with EPERM
//     (runc 1.1.5). Created inside the pod's user namespace, the network
//     namespace is joinable, and the container can mount its own sysfs.
//   - A Go process cannot unshare(CLONE_NEWUSER) itself (the kernel refuses
//     it to a multithreaded process), so a child does it. Go's clone writes
//     the child's uid_map and gid_map before the child execs; Ptrace makes the
//     child stop at its exec, before it runs a single instruction of the
//     image. The shim then pins the child's namespaces and kills it.
//   - The namespaces outlive that child only through their pins: bind mounts
//     of /proc/PID/ns/{user,net} onto files in the pod's private state dir.
//
// What runc 1.1.5 does with such pods (TestRuncJoinsPod checks the first):
//
//   - user and network namespaces joined by path, the network namespace owned
//     by the user namespace: runs; the container sees the pod's uid_map, lo up,
//     and mounts its own sysfs;
//   - joined user namespace without linux.uidMappings: "User namespaces
//     enabled, but no uid mappings found" (hence Rewrite always sets them);
//   - joined user namespace and a host-owned network namespace path:
//     "nsexec-1: failed to setns into net namespace: Operation not permitted";
//   - a user namespace (joined or created by runc) with the host's network
//     namespace or a host-owned one: mounting sysfs fails with EPERM, so a
//     user-namespaced container needs a network namespace of its pod's user
//     namespace, or a spec that bind-mounts /sys.
//
// Cost: Go cannot use CLONE_VFORK|CLONE_VM with CLONE_NEWUSER (the parent
// writes the child's maps while the child waits), so the clone is a full
// fork of the shim, about 2 ms of the few that CreatePinned takes. With Yama's
// ptrace_scope 3, PTRACE_TRACEME is refused and the child fails to start.

// Pin file names in a pod's state dir.
const (
	userPin = "user"
	netPin  = "net"
)

// holderCandidates are images for the namespace-holding child. It never runs
// (it is stopped at exec and killed), but execve must succeed, by the child's
// credentials: in a new user namespace it is an unmapped host uid, so the
// file and the directories above it must be executable by others.
// /proc/self/exe is the last resort: a test binary under a 0700 temp dir
// is not executable from a user namespace.
var holderCandidates = []string{"/usr/bin/true", "/bin/true", "/bin/busybox", "/proc/self/exe"}

var holderBinary = sync.OnceValue(func() string {
	for _, p := range holderCandidates {
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o001 != 0 {
			return p
		}
	}
	return "/proc/self/exe"
})

// Setup brings the namespaces a pod's first container asked for: created and
// pinned in dir, adopted, or none at all (a zero request).
func Setup(dir string, r Runner, req Request) (*Namespaces, error) {
	switch {
	case req.Creates():
		return CreatePinned(dir, r, req)
	case req.UserPath != "" || req.NetPath != "":
		return Adopt(dir, req)
	}
	return &Namespaces{}, nil
}

// CreatePinned creates the pod's namespaces and pins them in dir: with
// NewUser a user namespace with the request's mappings, and with NewNet a
// network namespace (inside that user namespace when both are asked), both in
// one child started and waited through r. The network namespace's lo is
// brought up. dir is prepared with PrepareStateDir.
func CreatePinned(dir string, r Runner, req Request) (_ *Namespaces, retErr error) {
	if !req.Creates() {
		return nil, fmt.Errorf("create pod namespaces in %s: the request creates none", dir)
	}
	if req.NewUser {
		if err := checkMappings(req.UIDMappings, req.GIDMappings); err != nil {
			return nil, err
		}
	}
	if err := PrepareStateDir(dir); err != nil {
		return nil, err
	}
	if err := fault.Check("pod.create"); err != nil {
		return nil, err
	}

	ns := &Namespaces{Owned: true}
	defer func() {
		if retErr != nil {
			ns.Release()
		}
	}()
	if !req.NewUser {
		// A network namespace alone needs no child.
		if err := pinNewNet(ns, dir); err != nil {
			return nil, err
		}
		return ns, nil
	}
	// lo comes up while the holder is killed and reaped.
	var lo chan error
	afterPin := func(pinErr error) {
		if pinErr == nil && req.NewNet {
			lo = make(chan error, 1)
			go func() { lo <- loopbackUp(ns.NetPath) }()
		}
	}
	err := pinFromChild(ns, dir, r, req, afterPin)
	if lo != nil {
		err = errors.Join(err, <-lo)
	}
	if err != nil {
		return nil, err
	}
	if req.NewUser {
		ns.UIDMappings = slices.Clone(req.UIDMappings)
		ns.GIDMappings = slices.Clone(req.GIDMappings)
	}
	return ns, nil
}

// pinFromChild clones the child holding the new namespaces, pins them into
// ns, and kills and reaps the child whatever happens. afterPin is told how
// pinning went, before the child is killed; it must not block.
func pinFromChild(ns *Namespaces, dir string, r Runner, req Request, afterPin func(error)) error {
	return withHolder(r, req, func(cmd *exec.Cmd) error {
		err := pinChild(ns, dir, cmd, req)
		afterPin(err)
		return err
	})
}

// withHolder clones a child in the new namespaces the request asks for
// (stopped at its exec, before it runs anything), runs fn while it lives,
// and kills and reaps it whatever happens. fn's error comes first.
func withHolder(r Runner, req Request, fn func(cmd *exec.Cmd) error) error {
	attr := &syscall.SysProcAttr{
		Ptrace: true,
		// Should the shim die before killing it, the child dies too.
		Pdeathsig: syscall.SIGKILL,
	}
	if req.NewUser {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = procIDMaps(req.UIDMappings)
		attr.GidMappings = procIDMaps(req.GIDMappings)
		// Containers of the pod call setgroups(2); "deny" would forbid it.
		attr.GidMappingsEnableSetgroups = true
	}
	if req.NewNet {
		attr.Cloneflags |= syscall.CLONE_NEWNET
	}
	cmd := exec.Command(holderBinary())
	cmd.Args = []string{"pod-namespace-holder"}
	cmd.Env = []string{}
	cmd.SysProcAttr = attr

	// The child's tracer (and Pdeathsig's parent) is the thread that cloned
	// it. Were that thread to exit, the child would be detached from ptrace
	// and resumed, so the thread stays ours until the child is killed.
	runtime.LockOSThread()
	if err := r.Start(cmd); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("start the child holding new namespaces (%s): %w", cmd.Path, err)
	}
	pid := cmd.Process.Pid // Wait releases cmd.Process
	fnErr := fn(cmd)
	killErr := cmd.Process.Kill()
	runtime.UnlockOSThread()
	status, waitErr := r.Wait(cmd)
	switch {
	case fnErr != nil:
		return fnErr
	case killErr != nil:
		return fmt.Errorf("kill namespace holder %d: %w", pid, killErr)
	case waitErr != nil:
		return fmt.Errorf("wait for namespace holder %d: %w", pid, waitErr)
	case status != 128+int(syscall.SIGKILL):
		// It should have been stopped at exec: a holder that ran is a bug
		// worth knowing (ptrace refused, say).
		return fmt.Errorf("namespace holder %d ended with status %d, not by the shim's SIGKILL", pid, status)
	}
	return nil
}

// pinChild pins the namespaces of the stopped holder child.
func pinChild(ns *Namespaces, dir string, cmd *exec.Cmd, req Request) error {
	pid := cmd.Process.Pid
	type want struct {
		kind string  // name in /proc/PID/ns
		pin  string  // pin file name in dir
		path *string // where ns records the pin
	}
	var wants []want
	if req.NewUser {
		wants = append(wants, want{"user", userPin, &ns.UserPath})
	}
	if req.NewNet {
		wants = append(wants, want{"net", netPin, &ns.NetPath})
	}
	files := make([]*os.File, 0, len(wants))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, w := range wants {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, w.kind))
		if err != nil {
			return fmt.Errorf("open %s namespace of holder %d: %w", w.kind, pid, err)
		}
		files = append(files, f)
	}
	// The files were opened from a pid; it was still the holder's if the
	// holder is not reaped yet (a zombie keeps its pid), which the pidfd
	// behind Signal tells.
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		return fmt.Errorf("namespace holder %d is gone before its namespaces were pinned: %w", pid, err)
	}
	for i, w := range wants {
		path := filepath.Join(dir, w.pin)
		if err := pin(files[i], path); err != nil {
			return fmt.Errorf("pin %s namespace: %w", w.kind, err)
		}
		ns.Pins = append(ns.Pins, path)
		*w.path = path
	}
	return nil
}

func procIDMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, x := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)}
	}
	return out
}

// Release unmounts and removes the pins the shim made and drops its
// references to adopted namespaces. Adopted paths are left alone. Calling it
// again does nothing.
func (n *Namespaces) Release() error {
	if n == nil {
		return nil
	}
	var errs []error
	var kept []string
	for _, p := range n.Pins {
		if err := unpin(p); err != nil {
			errs = append(errs, err)
			kept = append(kept, p)
		}
	}
	n.Pins = kept
	for _, f := range n.held {
		f.Close()
	}
	n.held = nil
	return errors.Join(errs...)
}

// Inode is the inode number of a file; for a namespace file, the namespace's
// id as ls -l /proc/PID/ns shows it.
func Inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode", path)
	}
	return st.Ino, nil
}
