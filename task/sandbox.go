package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
	tasktypes "github.com/podv2/containerd-shim-pod-v2/api/types/task"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/pod"
)

// Sandbox is the shim's sandbox (containerd 2.x with sandboxer = "shim"), as
// the task service needs to know it. The sandbox is not a task: State of its
// id is NotFound, but containerd asks Connect and Pids of it after a restart.
type Sandbox interface {
	// PodFor returns the pod a new container joins: the sandbox's, or nil
	// when the shim serves no sandbox (the task service then makes the
	// pod). An error: the sandbox takes no container now.
	PodFor(containerID string) (*pod.Pod, error)
	// Pid is the pid of the pod's own process of sandbox id (0 when it does
	// not run); ok is false when id is not the shim's sandbox.
	Pid(id string) (pid int, ok bool)
	// LogBundle is the sandbox's bundle, whose log fifo containerd reads
	// while the sandbox exists; "" without one.
	LogBundle() string
}

// sandboxPid answers for the sandbox's id: its process's pid.
func (s *Service) sandboxPid(id string) (int, bool) {
	if s.cfg.Sandbox == nil {
		return 0, false
	}
	return s.cfg.Sandbox.Pid(id)
}

// sandboxPids is Pids of the sandbox: its own process.
func (s *Service) sandboxPids(id string) (*taskapi.PidsResponse, bool) {
	pid, ok := s.sandboxPid(id)
	if !ok {
		return nil, false
	}
	resp := &taskapi.PidsResponse{}
	if pid > 0 {
		resp.Processes = append(resp.Processes, &tasktypes.ProcessInfo{Pid: uint32(pid)})
	}
	return resp, true
}

// removeWait bounds how long RemoveAll waits for a killed container's init.
const removeWait = 10 * time.Second

// RemoveAll kills and deletes every container of the shim: what containerd
// left when it shuts the sandbox down.
func (s *Service) RemoveAll(ctx context.Context) error {
	s.mu.Lock()
	var all []*container
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.mu.Unlock()
	var errs []error
	for _, c := range all {
		slog.Info("removing a container left in the sandbox", "id", c.id)
		if err := c.init.Kill(ctx, int(unix.SIGKILL), true); err != nil {
			slog.Debug("kill of a container left in the sandbox", "id", c.id, "error", err)
		}
		select {
		case <-c.init.Exited():
		case <-time.After(removeWait):
			errs = append(errs, fmt.Errorf("container %s: its init did not exit %v after SIGKILL", c.id, removeWait))
			continue
		}
		if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: c.id}); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", c.id, err))
		}
	}
	return errors.Join(errs...)
}
