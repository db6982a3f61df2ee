package task

import (
	"context"
	"encoding/json"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	tasktypes "github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// Exec adds an exec process to a running container; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := s.addExec(ctx, r); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) addExec(ctx context.Context, r *taskapi.ExecProcessRequest) error {
	c, err := s.get(r.ID)
	if err != nil {
		return err
	}
	if err := pod.ValidateID(r.ExecID); err != nil {
		return err
	}
	if st := c.init.Status(); st != process.Running {
		return precondition("cannot exec in container %s: it is %s, not running", c.id, st)
	}
	if r.Spec == nil || len(r.Spec.GetValue()) == 0 {
		return invalid("exec %s in container %s: no process spec", r.ExecID, c.id)
	}
	var spec specs.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &spec); err != nil {
		return invalid("exec %s in container %s: malformed process spec: %v", r.ExecID, c.id, err)
	}
	if len(spec.Args) == 0 {
		return invalid("exec %s in container %s: process spec has no args", r.ExecID, c.id)
	}
	streams := stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	e := process.NewExec(c.init, r.ExecID, &spec, streams)
	if c.hasExec(r.ExecID) {
		return alreadyExists("exec %s in container %s", r.ExecID, c.id)
	}
	// Readied before anyone can see it, so Start and Delete find it whole.
	e.Prepare(ctx)
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		_ = e.Delete()
		return alreadyExists("exec %s in container %s", r.ExecID, c.id)
	}
	c.execs[r.ExecID] = &execProc{Exec: e, ref: &procRef{c: c, exec: e}}
	c.mu.Unlock()
	s.pub.Publish(TopicExecAdded, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return nil
}

// startExec runs an added exec. It is counted as running from before the
// runtime starts it, so an init exit meanwhile waits for its exit.
func (s *Service) startExec(ctx context.Context, c *container, e *execProc) error {
	if st := c.init.Status(); st != process.Running {
		return precondition("cannot start exec %s in container %s: it is %s, not running", e.ID, c.id, st)
	}
	c.mu.Lock()
	c.running++
	c.mu.Unlock()
	s.beginStart()
	err := e.Start(ctx)
	s.endStart(e.ref, e.Pid())
	if err != nil {
		s.release(e.ref)
		s.execStartFailed(c)
		return err
	}
	s.pub.Publish(TopicExecStarted, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: e.ID, Pid: uint32(e.Pid())})
	s.release(e.ref)
	return nil
}

func (c *container) hasExec(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.execs[id]
	return ok
}

// discardCreatedExecs releases the execs of a deleted container that were
// added but never started: their prepared runtime is waiting for a spec.
func (s *Service) discardCreatedExecs(c *container) {
	c.mu.Lock()
	var created []*execProc
	for id, e := range c.execs {
		if e.Status() == process.Created {
			created = append(created, e)
			delete(c.execs, id)
		}
	}
	c.mu.Unlock()
	for _, e := range created {
		_ = e.Delete()
	}
}

// Pids lists the container's processes; those of execs carry their exec id.
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	pids, err := c.init.Runtime().Ps(ctx, c.id)
	if err != nil {
		return nil, toRPC(err)
	}
	execOf := map[int]string{}
	c.mu.Lock()
	for id, e := range c.execs {
		if pid := e.Pid(); pid > 0 {
			execOf[pid] = id
		}
	}
	c.mu.Unlock()
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		info := &tasktypes.ProcessInfo{Pid: uint32(pid)}
		if id, ok := execOf[pid]; ok {
			info.Info = processDetails(id)
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// processDetails tells containerd which exec a pid belongs to.
func processDetails(execID string) *anypb.Any {
	value, err := proto.Marshal(&options.ProcessDetails{ExecID: execID})
	if err != nil {
		return nil
	}
	return &anypb.Any{TypeUrl: string(proto.MessageName(&options.ProcessDetails{})), Value: value}
}
