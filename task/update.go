package task

import (
	"context"
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"

	"github.com/podv2/containerd-shim-pod-v2/process"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// Update applies new resource limits (a JSON LinuxResources) to a container.
func (s *Service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	if r.Resources == nil || len(r.Resources.GetValue()) == 0 {
		return nil, toRPC(invalid("update of container %s: no resources given", c.id))
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, toRPC(invalid("update of container %s: resources are not a JSON LinuxResources: %v", c.id, err))
	}
	switch st := c.init.Status(); st {
	case process.Running, process.Pausing, process.Paused, process.Created:
	default:
		return nil, toRPC(precondition("cannot update container %s: it is %s", c.id, st))
	}
	if err := c.init.Runtime().Update(ctx, c.id, &res); err != nil {
		return nil, toRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint dumps a running container to r.Path with criu, through the runtime.
// A failure leaves the container as it was and returns criu's own words.
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	var o options.CheckpointOptions
	if r.Options != nil && len(r.Options.GetValue()) > 0 {
		if name := typeName(r.Options.GetTypeUrl()); name != "containerd.runc.v1.CheckpointOptions" {
			return nil, toRPC(invalid("unsupported checkpoint options type %q", r.Options.GetTypeUrl()))
		}
		if err := wire.Unmarshal(r.Options.GetValue(), &o); err != nil {
			return nil, toRPC(invalid("decode checkpoint options: %v", err))
		}
	}
	if st := c.init.Status(); st != process.Running && st != process.Pausing && st != process.Paused {
		return nil, toRPC(precondition("cannot checkpoint container %s: it is %s, not running", c.id, st))
	}
	image := r.Path
	if o.ImagePath != "" {
		image = o.ImagePath
	}
	if image == "" {
		return nil, toRPC(invalid("checkpoint of container %s: no image path", c.id))
	}
	err = c.init.Runtime().Checkpoint(ctx, c.id, process.CheckpointOpts{
		ImagePath:           image,
		WorkPath:            o.WorkPath,
		Exit:                o.Exit,
		OpenTCP:             o.OpenTcp,
		ExternalUnixSockets: o.ExternalUnixSockets,
		Terminal:            o.Terminal,
		FileLocks:           o.FileLocks,
		EmptyNamespaces:     o.EmptyNamespaces,
	})
	if err != nil {
		return nil, toRPC(err)
	}
	s.pub.Publish(TopicCheckpointed, &eventstypes.TaskCheckpointed{ContainerID: c.id, Checkpoint: image})
	return &emptypb.Empty{}, nil
}
