package task

import (
	"context"
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	tasktypes "github.com/podv2/containerd-shim-pod-v2/api/types/task"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
	"github.com/podv2/containerd-shim-pod-v2/stdio"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// Exec adds an exec process to a running container; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := s.addExec(ctx, r); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) addExec(ctx context.Context, r *taskapi.ExecProcessRequest) error {
	c, err := s.get(ctx, r.ID)
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
	// The request says whether the exec gets a terminal; the spec may be a
	// copy of the container's (containerd's client does that).
	spec.Terminal = r.Terminal
	if c.hasExec(r.ExecID) { // before readying a runtime for nothing
		return alreadyExists("exec %s in container %s", r.ExecID, c.id)
	}
	// runc exec moves the exec's process into the container's cgroup by
	// pid: the kernel's wait before that move runs from now, while runc
	// starts up and the client asks for the exec's start.
	cgroup.WarmMigrationLock()
	e := process.NewExec(c.init, r.ExecID, &spec, stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	// Readied before anyone can see it, so Start and Delete find it whole.
	e.Prepare(ctx)
	if _, err := c.addExec(e, func() {
		s.pub.Publish(TopicExecAdded, &eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	}); err != nil {
		// Taken meanwhile, or the container is being deleted: nothing of
		// this exec may stay behind (its readied runtime waits for a spec).
		_ = e.Delete()
		return err
	}
	return nil
}

// startExec runs an added exec. It is counted as running from before the
// runtime starts it, so that an init exit meanwhile waits for its exit; a
// failed start counts it out again (its process, if any, was killed and its
// exit is nobody's).
func (s *Service) startExec(ctx context.Context, c *container, e *execProc) (int, error) {
	if st := c.init.Status(); st != process.Running {
		return 0, precondition("cannot start exec %s in container %s: it is %s, not running", e.ID, c.id, st)
	}
	c.order.execStarting()
	err := s.exits.during(e.ref, func(hooks process.Hooks) error {
		_, err := e.Start(ctx, hooks)
		return err
	}, func(pid int) {
		s.pub.Publish(TopicExecStarted, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: e.ID, Pid: uint32(pid)})
	})
	if err != nil {
		if held := c.order.execDone(); held != nil {
			s.initExited(c, *held)
		}
		return 0, err
	}
	if c.killAllOnExit && c.order.initWasReaped() {
		// Its process joined the container after init exited, maybe
		// after what was left was killed (the runtime checked that init
		// ran before init exited): kill it too, or init's exit, which
		// waits for the exec's, would wait for it forever.
		s.killRest(c)
	}
	return e.Pid(), nil
}

// discardCreatedExecs closes the container to new execs and deletes those
// that never started: their readied runtimes wait for a spec.
func (s *Service) discardCreatedExecs(c *container) {
	for _, e := range c.close() {
		_ = e.Delete()
	}
}

// Pids lists the container's processes; those of execs carry their exec id.
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	if resp, ok := s.sandboxPids(r.ID); ok {
		return resp, nil
	}
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	pids, err := c.init.Runtime().Ps(ctx, c.id)
	if err != nil {
		return nil, toRPC(err)
	}
	execOf := c.execPids()
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
	value, err := wire.Marshal(&options.ProcessDetails{ExecID: execID})
	if err != nil {
		return nil
	}
	return &anypb.Any{TypeUrl: (&options.ProcessDetails{}).ProtoName(), Value: value}
}
