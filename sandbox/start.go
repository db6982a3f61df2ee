package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	"golang.org/x/sys/unix"

	api "github.com/podv2/containerd-shim-pod-v2/api/sandbox/v1"
	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
	"github.com/podv2/containerd-shim-pod-v2/process"
	"github.com/podv2/containerd-shim-pod-v2/undo"
)

// podOOMScoreAdj is the pod process's oom_score_adj, as CRI gives a pause
// container: the last thing of the pod the OOM killer takes.
const podOOMScoreAdj = -998

// StartSandbox starts the pod's own process, in its cgroup, and returns its
// pid: CRI makes every container of the pod join its namespaces.
func (s *Service) StartSandbox(ctx context.Context, r *api.StartSandboxRequest) (*api.StartSandboxResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	if err := s.start(sb); err != nil {
		return nil, toRPC(err)
	}
	// The pod's first container comes next: its runc create finds the
	// kernel's cgroup migration lock warm (the pod's process took none),
	// and its create the OCI spec's JSON coders built.
	cgroup.WarmMigrationLock()
	prepareForContainers()
	spec, err := sb.spec()
	if err != nil {
		return nil, toRPC(err)
	}
	return &api.StartSandboxResponse{Pid: uint32(sb.proc.pid), CreatedAt: timestamppb.New(sb.createdAt), Spec: spec}, nil
}

// start runs the steps of StartSandbox, each registering its undo: a
// failure leaves the sandbox created, as it was.
func (s *Service) start(sb *sandbox) (retErr error) {
	sb.op.Lock()
	defer sb.op.Unlock()
	sb.mu.Lock()
	st := sb.state
	sb.mu.Unlock()
	if st != created {
		return precondition("sandbox %s: already started", sb.id)
	}
	var rollback undo.Stack
	defer func() {
		if retErr != nil {
			retErr = rollback.Unwind(retErr)
		}
	}()

	var podCg, leaf *cgroup.Cgroup
	var made []string
	if parent := sb.plan.CgroupParent; parent != "" {
		if err := fault.Check("sandbox.cgroup"); err != nil {
			return err
		}
		var err error
		if podCg, err = cgroup.LoadPath(parent); err != nil {
			return fmt.Errorf("cgroup of sandbox %s: %w", sb.id, err)
		}
		if leaf, err = podCg.Child(sb.id); err != nil {
			return err
		}
		if made, err = podCg.Create(); err != nil {
			return fmt.Errorf("cgroup of sandbox %s: %w", sb.id, err)
		}
		rollback.Push(func() error { removeParents(made); return nil })
		if _, err := leaf.Create(); err != nil {
			return fmt.Errorf("cgroup of sandbox %s's process: %w", sb.id, err)
		}
		rollback.Push(func() error { return removeLeaf(context.Background(), leaf.Directories()) })
	}

	// The pod's process is born in its cgroup: on v2 through clone3's
	// CLONE_INTO_CGROUP, on v1 its starter moves itself there before the
	// fork (see podproc.Config). Nothing is moved by pid.
	var bornIn *os.File
	var tasks []*os.File
	if leaf != nil {
		if err := fault.Check("sandbox.cgroup-join"); err != nil {
			return err
		}
		var err error
		if leaf.Version() == 2 {
			dir := leaf.Directories()[0]
			bornIn, err = os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err == nil {
				defer bornIn.Close()
			}
		} else {
			tasks, err = leaf.OpenTasks()
			defer closeFiles(tasks)
		}
		if err != nil {
			return fmt.Errorf("cgroup of sandbox %s's process: %w", sb.id, err)
		}
	}
	if err := fault.Check("sandbox.process"); err != nil {
		return err
	}
	ns, _ := sb.pod.Namespaces()
	proc := &podProcess{done: make(chan struct{})}
	startIn := func(cg *os.File) (int, error) {
		return s.exits.during(func() (int, error) {
			return podproc.Start(s.cfg.Reaper, podproc.Config{
				UserNS:   ns.UserPath,
				NetNS:    ns.NetPath,
				NewIPC:   sb.plan.NewIPC,
				NewUTS:   sb.plan.NewUTS,
				NewPID:   sb.plan.NewPID,
				Hostname: sb.plan.Hostname,
				Sysctls:  sb.plan.Sysctls,
				Cgroup:   cg,
				Tasks:    tasks,
			})
		}, func(e process.Exit) { s.podExited(sb, proc, e) })
	}
	pid, err := startIn(bornIn)
	moveAfter := false
	if bornIn != nil && (errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL)) {
		// A kernel older than 5.7 has no CLONE_INTO_CGROUP: the process is
		// moved once started.
		slog.Info("the pod's process cannot be born in its cgroup: moved there once started", "sandbox", sb.id, "error", err)
		moveAfter = true
		pid, err = startIn(nil)
	}
	if err != nil {
		return fmt.Errorf("the process of sandbox %s: %w", sb.id, err)
	}
	proc.pid = pid
	rollback.Push(func() error { return s.kill(sb, proc, unix.SIGKILL) })

	if moveAfter {
		if err := leaf.AddProc(pid); err != nil {
			return err
		}
	}
	setOOMScoreAdj(pid, podOOMScoreAdj)

	sb.mu.Lock()
	sb.proc, sb.podCgroup, sb.leaf, sb.parentsMade = proc, podCg, leaf, made
	sb.mu.Unlock()
	rollback.Push(func() error {
		sb.mu.Lock()
		sb.proc, sb.podCgroup, sb.leaf, sb.parentsMade = nil, nil, nil, nil
		sb.mu.Unlock()
		return nil
	})
	if err := fault.Check("sandbox.start-record"); err != nil {
		return err
	}
	if err := saveRecord(sb.dir, sb.record()); err != nil {
		return err
	}

	// Containers join from now on: the pod's IPC and UTS namespaces are its
	// process's.
	shared := pod.Shared{Mounts: sb.mounts}
	if sb.plan.NewIPC {
		shared.IPCPath = nsPath(pid, "ipc")
	}
	if sb.plan.NewUTS {
		shared.UTSPath = nsPath(pid, "uts")
	}
	sb.pod.Share(shared)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	select {
	case <-proc.done:
		// It died on its way: the sandbox starts stopped, as its exit says.
		sb.state = stopped
		sb.end()
	default:
		sb.state = running
	}
	return nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func nsPath(pid int, kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, kind) }

// podExited is the pod's process's end: the sandbox stops, its waiters go.
func (s *Service) podExited(sb *sandbox, proc *podProcess, e process.Exit) {
	proc.exit = e
	close(proc.done)
	sb.mu.Lock()
	current := sb.proc == proc
	if current {
		sb.state = stopped
	}
	sb.mu.Unlock()
	if current {
		slog.Info("the sandbox's process exited", "sandbox", sb.id, "pid", e.Pid, "status", e.Status)
		sb.pod.Share(pod.Shared{})
		sb.end()
	}
}

// setOOMScoreAdj sets the pod process's oom_score_adj; without
// CAP_SYS_RESOURCE a score below the inherited one is refused, and the
// process keeps the shim's.
func setOOMScoreAdj(pid, score int) {
	path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	if err := os.WriteFile(path, []byte(strconv.Itoa(score)), 0); err != nil {
		slog.Debug("the pod's process keeps the shim's oom_score_adj", "pid", pid, "want", score, "error", err)
	}
}
