package task

import (
	"context"
	"fmt"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Stats returns the container's cgroup metrics.
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	return nil, toRPC(withKind(errdefs.ErrNotImplemented, errNotYet("stats")))
}

func processDetails(execID string) *anypb.Any {
	value, err := proto.Marshal(&options.ProcessDetails{ExecID: execID})
	if err != nil {
		return nil
	}
	return &anypb.Any{TypeUrl: string(proto.MessageName(&options.ProcessDetails{})), Value: value}
}

func errNotYet(op string) error {
	return fmt.Errorf("%s is not implemented by %s yet", op, RuntimeName)
}
