// Command containerd-shim-pod-v2 is containerd's io.containerd.pod.v2 runtime:
// one shim process per pod.
package main

import (
	"context"
	"path/filepath"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	// The pod's own process runs from the binary's entry point, which
	// podproc holds: the binary is linked with -ldflags=-E=containerd_shim_pod_v2_entry.
	_ "github.com/podv2/containerd-shim-pod-v2/pod/podproc"
	"github.com/podv2/containerd-shim-pod-v2/shim"
	"github.com/podv2/containerd-shim-pod-v2/task"
)

func main() {
	shim.Run(shim.Handlers{
		GroupKey: pod.GroupKey,
		Register: func(ctx context.Context, cfg *shim.Config, pub shim.Publisher, srv *ttrpc.Server, exit func(string)) (func() bool, error) {
			svc, err := task.New(ctx, taskConfig(cfg), pub, exit)
			if err != nil {
				return nil, err
			}
			svc.Register(srv)
			return svc.Busy, nil
		},
		Delete: func(ctx context.Context, cfg *shim.Config) (proto.Message, error) {
			return task.Cleanup(ctx, taskConfig(cfg))
		},
		Info: func(ctx context.Context, opts *anypb.Any) (proto.Message, error) {
			return task.Info(ctx, opts, shim.Version, shim.Revision)
		},
	})
}

func taskConfig(cfg *shim.Config) task.Config {
	podKey := ""
	if cfg.SocketPath != "" {
		podKey = filepath.Base(cfg.SocketPath)
	}
	return task.Config{
		Namespace: cfg.Namespace,
		ID:        cfg.ID,
		Bundle:    cfg.Bundle,
		Debug:     cfg.Debug,
		PodKey:    podKey,
		ShimAlive: cfg.ShimAlive,
		LogTo:     shim.LogTo,
	}
}
