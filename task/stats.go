package task

import (
	"context"

	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"
)

// Stats returns the container's cgroup metrics: io.containerd.cgroups.v1.Metrics
// or io.containerd.cgroups.v2.Metrics, as the machine's cgroups are.
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	c, err := s.get(ctx, r.ID)
	if err != nil {
		return nil, toRPC(err)
	}
	if c.cgroup == nil {
		return nil, toRPC(precondition("no stats for container %s: its cgroup was not found", c.id))
	}
	value, typeURL, err := c.cgroup.AppendMetrics(nil)
	if err != nil {
		return nil, toRPC(precondition("stats of container %s: %v", c.id, err))
	}
	return &taskapi.StatsResponse{Stats: &anypb.Any{TypeUrl: typeURL, Value: value}}, nil
}
