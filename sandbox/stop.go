package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	api "github.com/podv2/containerd-shim-pod-v2/api/sandbox/v1"
	"github.com/podv2/containerd-shim-pod-v2/pod"
)

// killWait bounds how long the pod's process may take to be reaped once
// killed.
const killWait = 10 * time.Second

// StopSandbox ends the pod's process (SIGTERM first if a timeout is given,
// SIGKILL when it passes; CRI gives none, having killed the containers) and
// removes its cgroup. The shim keeps serving: the pod's namespaces and files
// stay until ShutdownSandbox.
func (s *Service) StopSandbox(ctx context.Context, r *api.StopSandboxRequest) (*api.StopSandboxResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if err := s.stop(ctx, sb, time.Duration(r.GetTimeoutSecs())*time.Second); err != nil {
		return nil, toRPC(err)
	}
	return &api.StopSandboxResponse{}, nil
}

// stop runs under sb.op.
func (s *Service) stop(ctx context.Context, sb *sandbox, timeout time.Duration) error {
	sb.mu.Lock()
	proc, leaf := sb.proc, sb.leaf
	sb.state = stopped
	sb.mu.Unlock()
	sb.pod.Share(pod.Shared{})
	if proc != nil {
		if timeout > 0 {
			if err := s.cfg.Reaper.Signal(proc.pid, unix.SIGTERM); err == nil {
				select {
				case <-proc.done:
				case <-time.After(timeout):
				case <-ctx.Done():
				}
			}
		}
		if err := s.kill(sb, proc, unix.SIGKILL); err != nil {
			return err
		}
	}
	sb.end()
	if leaf != nil {
		// The pod cgroup itself stays (its containers' cgroups may still be
		// in it) until ShutdownSandbox.
		if err := removeLeaf(ctx, leaf.Directories()); err != nil {
			return fmt.Errorf("cgroup of sandbox %s's process: %w", sb.id, err)
		}
		sb.mu.Lock()
		sb.leaf = nil
		sb.mu.Unlock()
	}
	return nil
}

// kill signals the pod's process and waits until it is reaped.
func (s *Service) kill(sb *sandbox, proc *podProcess, sig unix.Signal) error {
	if err := s.cfg.Reaper.Signal(proc.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal the process %d of sandbox %s: %w", proc.pid, sb.id, err)
	}
	select {
	case <-proc.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("the process %d of sandbox %s was not reaped %v after %v", proc.pid, sb.id, killWait, sig)
	}
}

// ShutdownSandbox removes everything of the pod: its process, the
// containers containerd left, its namespaces' pins, its files, its cgroups.
// The shim exits once it has answered and holds nothing else. A sandbox it
// does not have (its CreateSandbox failed and was undone) is already gone:
// the shim exits all the same.
func (s *Service) ShutdownSandbox(ctx context.Context, r *api.ShutdownSandboxRequest) (*api.ShutdownSandboxResponse, error) {
	id := r.GetSandboxId()
	defer s.cfg.Exit(id)
	sb, err := s.get(id)
	if err != nil {
		slog.Info("shutdown of a sandbox the shim does not have", "sandbox", id)
		return &api.ShutdownSandboxResponse{}, nil
	}
	if err := s.shutdown(ctx, sb); err != nil {
		return nil, toRPC(err)
	}
	return &api.ShutdownSandboxResponse{}, nil
}

func (s *Service) shutdown(ctx context.Context, sb *sandbox) error {
	sb.op.Lock()
	defer sb.op.Unlock()
	if err := s.stop(ctx, sb, 0); err != nil {
		return err
	}
	var errs []error
	if s.containers != nil {
		if err := s.containers.RemoveAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove the containers left in sandbox %s: %w", sb.id, err))
		}
	}
	sb.mu.Lock()
	made := sb.parentsMade
	sb.mu.Unlock()
	removeParents(made)
	if err := removeRecord(sb.dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := sb.pod.Leave(sb.id); err != nil {
		errs = append(errs, err)
	}
	// Gone for containerd whatever failed: what is left is `delete`'s.
	s.mu.Lock()
	if s.sb == sb {
		s.sb = nil
	}
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shut down sandbox %s: %w", sb.id, err)
	}
	return nil
}
