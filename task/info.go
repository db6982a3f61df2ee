package task

import (
	"context"
	"fmt"

	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/types"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// RuntimeName is the runtime type containerd knows the shim by.
const RuntimeName = "io.containerd.pod.v2"

const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// Info answers -info: the shim's name and version and the features of the
// OCI runtime the options name, adjusted by what the shim adds or takes away
// (see featuresOf).
func Info(ctx context.Context, opts *anypb.Any, version, revision string) (*types.RuntimeInfo, error) {
	o, err := decodeOptions(opts)
	if err != nil {
		return nil, err
	}
	rt := &process.Runc{Binary: o.BinaryName, Children: process.Default()}
	raw, err := rt.Features(ctx)
	if err != nil {
		return nil, fmt.Errorf("features of the OCI runtime: %w", err)
	}
	f, err := featuresOf(raw, hostKernel())
	if err != nil {
		return nil, fmt.Errorf("features of the OCI runtime %s: %w", rt.Binary, err)
	}
	return &types.RuntimeInfo{
		Name:     RuntimeName,
		Version:  &types.RuntimeVersion{Version: version, Revision: revision},
		Options:  opts,
		Features: &anypb.Any{TypeUrl: featuresTypeURL, Value: f.json},
	}, nil
}
