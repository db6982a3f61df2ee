package task

import (
	"context"
	"log/slog"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// routeExits hands every reaped exit to its process.
func (s *Service) routeExits(sub *process.Subscription) {
	for e := range sub.C {
		s.mu.Lock()
		ref, ok := s.byPid[e.Pid]
		if !ok {
			if s.pendingStarts > 0 {
				s.unclaimed[e.Pid] = e
			}
			s.mu.Unlock()
			continue
		}
		delete(s.byPid, e.Pid)
		if ref.starting {
			ref.deferred = &e
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		s.exited(ref, e)
	}
}

// beginStart notes that a process is about to get a pid.
func (s *Service) beginStart() {
	s.mu.Lock()
	s.pendingStarts++
	s.mu.Unlock()
}

// endStart ends a beginStart. With a pid, the process is registered for its
// exit and marked starting; an exit that came before is held for release.
func (s *Service) endStart(ref *procRef, pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pendingStarts--
	if ref != nil && pid > 0 {
		ref.starting = true
		if e, ok := s.unclaimed[pid]; ok {
			delete(s.unclaimed, pid)
			ref.deferred = &e
		} else {
			s.byPid[pid] = ref
		}
	}
	if s.pendingStarts == 0 {
		clear(s.unclaimed)
	}
}

// holdExits marks a registered process as starting: its exit waits for release.
func (s *Service) holdExits(ref *procRef) {
	s.mu.Lock()
	ref.starting = true
	s.mu.Unlock()
}

// release lets exits of ref through again, handling one that was held. Call
// it after the event of the step (create, start) has been published.
func (s *Service) release(ref *procRef) {
	s.mu.Lock()
	ref.starting = false
	e := ref.deferred
	ref.deferred = nil
	s.mu.Unlock()
	if e != nil {
		s.exited(ref, *e)
	}
}

// forget drops every exit route of a container.
func (s *Service) forget(c *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, ref := range s.byPid {
		if ref.c == c {
			delete(s.byPid, pid)
		}
	}
}

// exited records a process's exit and publishes it. An init exit is held
// while execs of its container still run, so that every exec exit is
// published before it.
func (s *Service) exited(ref *procRef, e process.Exit) {
	c := ref.c
	if ref.exec != nil {
		c.mu.Lock()
		if ref.exec.SetExited(e.Status, e.Timestamp) {
			s.publishExit(c.id, ref.exec.ID, e)
			c.running--
		}
		held := c.releaseHeldInitExitLocked()
		c.mu.Unlock()
		if held != nil {
			s.initExited(c, *held)
		}
		return
	}
	if c.killAllOnExit {
		s.killAll(c)
	}
	c.mu.Lock()
	if c.running > 0 {
		c.heldInitExit = &e
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	s.initExited(c, e)
}

func (s *Service) initExited(c *container, e process.Exit) {
	if c.cgroup != nil {
		// An OOM kill is published before the exit it caused.
		c.cgroup.FlushOOM()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.init.SetExited(e.Status, e.Timestamp) {
		s.publishExit(c.id, c.id, e)
	}
}

// execStartFailed undoes the count of an exec that never ran.
func (s *Service) execStartFailed(c *container) {
	c.mu.Lock()
	c.running--
	held := c.releaseHeldInitExitLocked()
	c.mu.Unlock()
	if held != nil {
		s.initExited(c, *held)
	}
}

// killAll kills what is left of a container without its own pid namespace
// once its init is gone.
func (s *Service) killAll(c *container) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.init.Kill(ctx, int(unix.SIGKILL), true); err != nil {
		slog.Debug("kill remaining processes after init exit", "id", c.id, "error", err)
	}
}

func (s *Service) publishExit(containerID, id string, e process.Exit) {
	s.pub.Publish(TopicExit, &eventstypes.TaskExit{
		ContainerID: containerID,
		ID:          id,
		Pid:         uint32(e.Pid),
		ExitStatus:  uint32(e.Status),
		ExitedAt:    timestamppb.New(e.Timestamp),
	})
}

// releaseHeldInitExitLocked hands over init's held exit once no exec runs.
// c.mu is held.
func (c *container) releaseHeldInitExitLocked() *process.Exit {
	if c.running > 0 || c.heldInitExit == nil {
		return nil
	}
	held := c.heldInitExit
	c.heldInitExit = nil
	return held
}
