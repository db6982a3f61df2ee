// Command containerd-shim-pod-v2 is containerd's io.containerd.pod.v2 runtime:
// one shim process per pod.
package main

import (
	"context"
	"path/filepath"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	// The pod's own process runs from the binary's entry point, which
	// podproc holds: the binary is linked with -ldflags=-E=containerd_shim_pod_v2_entry.
	_ "github.com/podv2/containerd-shim-pod-v2/pod/podproc"
	"github.com/podv2/containerd-shim-pod-v2/sandbox"
	"github.com/podv2/containerd-shim-pod-v2/shim"
	"github.com/podv2/containerd-shim-pod-v2/task"
)

func main() {
	shim.Run(shim.Handlers{
		GroupKey: pod.GroupKey,
		Register: register,
		Delete: func(ctx context.Context, cfg *shim.Config) (any, error) {
			// A sandbox's bundle: its pod goes with it (after its containers).
			if ok, err := sandbox.Cleanup(ctx, sandbox.CleanupConfig{
				Namespace: cfg.Namespace, ID: cfg.ID, PodKey: podKey(cfg), ShimAlive: cfg.ShimAlive,
			}); ok || err != nil {
				if err != nil {
					return nil, err
				}
				return task.DeletedResponse(), nil
			}
			return task.Cleanup(ctx, taskConfig(cfg))
		},
		Info: func(ctx context.Context, opts *anypb.Any) (any, error) {
			return task.Info(ctx, opts, shim.Version, shim.Revision)
		},
	})
}

// register serves the task API and the sandbox API on the shim's socket; the
// shim stays while either holds something.
func register(ctx context.Context, cfg *shim.Config, pub shim.Publisher, srv *ttrpc.Server, exit func(string)) (func() bool, error) {
	sb := sandbox.New(sandbox.Config{Namespace: cfg.Namespace, PodKey: podKey(cfg), Exit: exit})
	tc := taskConfig(cfg)
	tc.Sandbox = sb
	svc, err := task.New(ctx, tc, pub, exit)
	if err != nil {
		return nil, err
	}
	sb.SetContainers(svc)
	svc.Register(srv)
	sb.Register(srv)
	return func() bool { return svc.Busy() || sb.Busy() }, nil
}

// podKey names the pod's state dir: the shim's socket, a hash of containerd's
// address, the namespace and the pod's group key.
func podKey(cfg *shim.Config) string {
	if cfg.SocketPath == "" {
		return ""
	}
	return filepath.Base(cfg.SocketPath)
}

func taskConfig(cfg *shim.Config) task.Config {
	return task.Config{
		Namespace: cfg.Namespace,
		ID:        cfg.ID,
		Bundle:    cfg.Bundle,
		Debug:     cfg.Debug,
		PodKey:    podKey(cfg),
		ShimAlive: cfg.ShimAlive,
		LogTo:     shim.LogTo,
	}
}
