package task

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
	tasktypes "github.com/podv2/containerd-shim-pod-v2/api/types/task"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// Start starts a created container's init, or a created exec.
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	c, e, err := s.getProcess(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	if e != nil {
		pid, err := s.startExec(ctx, c, e)
		if err != nil {
			return nil, toRPC(err)
		}
		return &taskapi.StartResponse{Pid: uint32(pid)}, nil
	}
	var started int
	err = s.exits.during(c.ref, func(hooks process.Hooks) error {
		_, err := c.init.Start(ctx, hooks)
		return err
	}, func(pid int) {
		started = pid
		s.pub.Publish(TopicStart, &eventstypes.TaskStart{ContainerID: c.id, Pid: uint32(pid)})
	})
	if err != nil {
		return nil, toRPC(err)
	}
	return &taskapi.StartResponse{Pid: uint32(started)}, nil
}

// Delete deletes a container (its init must be created or stopped) or an
// exec. Of concurrent Deletes of one process, one does the work and
// publishes the event; the others find it gone (NotFound).
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	c, e, err := s.getProcess(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	if e != nil {
		if err := e.Delete(); err != nil {
			return nil, toRPC(err)
		}
		c.removeExec(e.ID)
		status, at := e.ExitInfo()
		return &taskapi.DeleteResponse{Pid: uint32(e.Pid()), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
	}
	if err := c.init.Delete(ctx, func() error { return s.teardown(c) }); err != nil {
		return nil, toRPC(err)
	}
	s.keepLogReadable()
	status, at := c.init.ExitInfo()
	return &taskapi.DeleteResponse{Pid: uint32(c.init.Pid()), ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// initExitWait bounds how long a deleted container's killed init may take
// to be reaped before its exit is published without it.
const initExitWait = 2 * time.Second

// teardown is a container's Delete once the runtime has removed it: it runs
// under the init's operation lock, so once per container. It can be run
// again after a failure.
func (s *Service) teardown(c *container) error {
	// A created init was killed by the runtime's delete: its exit is
	// published before the delete.
	select {
	case <-c.init.Exited():
	case <-time.After(initExitWait):
		slog.Warn("init's exit not reaped in time: published without it", "id", c.id, "pid", c.init.Pid())
		s.initExited(c, process.Exit{Pid: c.init.Pid(), Status: 128 + int(unix.SIGKILL), Timestamp: time.Now()})
	}
	if c.rootfs != "" {
		if err := unmountRootfs(c.rootfs); err != nil {
			return err
		}
	}
	s.discardCreatedExecs(c)
	if c.stopOOM != nil {
		c.stopOOM()
	}
	if _, err := c.pod.Leave(c.id); err != nil {
		return fmt.Errorf("container %s leaving its pod: %w", c.id, err)
	}
	s.exits.forget(c)
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	status, at := c.init.ExitInfo()
	s.pub.Publish(TopicDelete, &eventstypes.TaskDelete{
		ContainerID: c.id,
		ID:          c.id,
		Pid:         uint32(c.init.Pid()),
		ExitStatus:  uint32(status),
		ExitedAt:    timestamppb.New(at),
	})
	return nil
}

// Kill signals init (with all, every process of the container) or an exec.
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	c, e, err := s.getProcess(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	if e != nil {
		err = e.Kill(int(r.Signal))
	} else {
		err = c.init.Kill(ctx, int(r.Signal), r.All)
	}
	if err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Wait blocks until the process has exited, or the request is cancelled.
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	_, p, err := s.procOf(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		return nil, toRPC(ctx.Err())
	}
	status, at := p.ExitInfo()
	return &taskapi.WaitResponse{ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// State reports a process's status and stdio.
func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	c, p, err := s.procOf(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	status, at := p.ExitInfo()
	resp := &taskapi.StateResponse{
		ID:         p.ID,
		Bundle:     c.bundle,
		Pid:        uint32(p.Pid()),
		Status:     apiStatus(p.Status()),
		Stdin:      p.Config.Stdin,
		Stdout:     p.Config.Stdout,
		Stderr:     p.Config.Stderr,
		Terminal:   p.Config.Terminal,
		ExitStatus: uint32(status),
		ExecID:     r.ExecID,
	}
	if !at.IsZero() {
		resp.ExitedAt = timestamppb.New(at)
	}
	return resp, nil
}

// Connect reports the shim's pid and the container's init pid.
func (s *Service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if pid, ok := s.sandboxPid(r.ID); ok {
		resp.TaskPid = uint32(pid)
	} else if c, err := s.get(ctx, r.ID); err == nil {
		resp.TaskPid = uint32(c.init.Pid())
	}
	return resp, nil
}

// Shutdown asks the shim to exit once the pod has no container left; the
// shim decides (it never exits while a container or a start is pending).
func (s *Service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.shutdown(r.ID)
	return &emptypb.Empty{}, nil
}

// Busy says whether the service holds a container, or a Create is under way.
func (s *Service) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers)+len(s.creating) > 0
}

// Pause freezes a running container.
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	if err := c.init.Pause(ctx, func() {
		s.pub.Publish(TopicPaused, &eventstypes.TaskPaused{ContainerID: c.id})
	}); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Resume thaws a paused container.
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	if err := c.init.Resume(ctx, func() {
		s.pub.Publish(TopicResumed, &eventstypes.TaskResumed{ContainerID: c.id})
	}); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.procOf(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	if r.Stdin {
		if err := p.CloseStdin(); err != nil {
			return nil, toRPC(err)
		}
	}
	return &emptypb.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	_, p, err := s.procOf(ctx, r.ID, r.ExecID)
	if err != nil {
		return nil, toRPC(err)
	}
	if err := p.Resize(r.Width, r.Height); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func apiStatus(s process.Status) tasktypes.Status {
	switch s {
	case process.Created:
		return tasktypes.Status_CREATED
	case process.Running:
		return tasktypes.Status_RUNNING
	case process.Pausing:
		return tasktypes.Status_PAUSING
	case process.Paused:
		return tasktypes.Status_PAUSED
	case process.Stopped, process.Deleted:
		return tasktypes.Status_STOPPED
	}
	return tasktypes.Status_UNKNOWN
}
