package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"github.com/containerd/errdefs"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	"github.com/podv2/containerd-shim-pod-v2/api/types"

	api "github.com/podv2/containerd-shim-pod-v2/api/sandbox/v1"
)

// The states containerd's CRI compares SandboxStatus's state with.
const (
	stateReady    = "SANDBOX_READY"
	stateNotReady = "SANDBOX_NOTREADY"
)

// Platform is the platform of the sandbox's containers: CRI asks at every
// CreateContainer and builds a Linux spec only for "linux".
func (s *Service) Platform(ctx context.Context, r *api.PlatformRequest) (*api.PlatformResponse, error) {
	if _, err := s.get(r.GetSandboxId()); err != nil {
		return nil, toRPC(err)
	}
	return &api.PlatformResponse{Platform: &types.Platform{OS: "linux", Architecture: runtime.GOARCH}}, nil
}

// SandboxStatus reports the pod's process and whether the sandbox is ready.
func (s *Service) SandboxStatus(ctx context.Context, r *api.SandboxStatusRequest) (*api.SandboxStatusResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	resp := &api.SandboxStatusResponse{SandboxId: sb.id, State: stateNotReady, CreatedAt: timestamppb.New(sb.createdAt)}
	if sb.state == running {
		resp.State = stateReady
	}
	if sb.proc != nil {
		resp.Pid = uint32(sb.proc.pid)
		select {
		case <-sb.proc.done:
			resp.ExitedAt = timestamppb.New(sb.proc.exit.Timestamp)
		default:
		}
	}
	if r.GetVerbose() {
		info, err := sb.verboseInfoLocked()
		if err != nil {
			return nil, toRPC(err)
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

// verboseInfoLocked is SandboxStatus's verbose info, under the key "info", as
// CRI's pause controller writes it (crictl inspectp shows it, and CRI
// decodes it to add the pod's resources): the pod process's pid and state,
// the runtime type, the sandbox's spec.
func (sb *sandbox) verboseInfoLocked() (string, error) {
	info := struct {
		Pid         uint32          `json:"pid"`
		Status      string          `json:"processStatus"`
		NetNSClosed bool            `json:"netNamespaceClosed"`
		RuntimeType string          `json:"runtimeType"`
		RuntimeSpec json.RawMessage `json:"runtimeSpec,omitempty"`
	}{RuntimeType: runtimeType}
	switch sb.state {
	case running:
		info.Status = "running"
	case stopped:
		info.Status = "stopped"
	default:
		info.Status = "created"
	}
	if sb.proc != nil {
		info.Pid = uint32(sb.proc.pid)
		if spec, err := sb.specLocked(); err == nil {
			info.RuntimeSpec = spec.Value
		}
	}
	data, err := json.Marshal(info)
	return string(data), err
}

// runtimeType is this runtime's name.
const runtimeType = "io.containerd.pod.v2"

// WaitSandbox waits until the sandbox runs no more: its process ended, or it
// was stopped.
func (s *Service) WaitSandbox(ctx context.Context, r *api.WaitSandboxRequest) (*api.WaitSandboxResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	select {
	case <-sb.ended:
	case <-ctx.Done():
		return nil, toRPC(ctx.Err())
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	resp := &api.WaitSandboxResponse{ExitedAt: timestamppb.Now()}
	if sb.proc != nil {
		select {
		case <-sb.proc.done:
			resp.ExitStatus = uint32(sb.proc.exit.Status)
			resp.ExitedAt = timestamppb.New(sb.proc.exit.Timestamp)
		default:
		}
	}
	return resp, nil
}

// PingSandbox answers.
func (s *Service) PingSandbox(ctx context.Context, r *api.PingRequest) (*api.PingResponse, error) {
	if _, err := s.get(r.GetSandboxId()); err != nil {
		return nil, toRPC(err)
	}
	return &api.PingResponse{}, nil
}

// SandboxMetrics reads the pod's cgroup: containerd 2.4's CRI asks every
// second per pod. A pod without a cgroup (no cgroup_parent) has none:
// NotFound, which CRI passes over.
func (s *Service) SandboxMetrics(ctx context.Context, r *api.SandboxMetricsRequest) (*api.SandboxMetricsResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	sb.mu.Lock()
	cg := sb.podCgroup
	sb.mu.Unlock()
	if cg == nil {
		return nil, toRPC(notFound("sandbox %s has no pod cgroup (no cgroup_parent)", sb.id))
	}
	value, typeURL, err := cg.AppendMetrics(nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, toRPC(notFound("metrics of sandbox %s: %v", sb.id, err))
	}
	if err != nil {
		return nil, toRPC(fmt.Errorf("metrics of sandbox %s: %w", sb.id, err))
	}
	return &api.SandboxMetricsResponse{Metrics: &types.Metric{
		Timestamp: timestamppb.Now(),
		ID:        sb.id,
		Data:      &anypb.Any{TypeUrl: typeURL, Value: value},
	}}, nil
}

// updatedResourcesType is the extension CRI's UpdatePodSandboxResources
// puts on the sandbox (containerd 2.4): JSON of {Overhead, Resources}, each
// a LinuxContainerResources. The type URL is typeurl's join of the
// registered prefix and name, with a slash.
const (
	updatedResourcesKey  = "updated-resources"
	updatedResourcesType = "io.containerd.cri.v1/UpdatedResources"
)

// UpdateSandbox applies the pod's new resources (and overhead) to the pod
// cgroup. An update without resources changes nothing.
func (s *Service) UpdateSandbox(ctx context.Context, r *api.UpdateSandboxRequest) (*api.UpdateSandboxResponse, error) {
	sb, err := s.get(r.GetSandboxId())
	if err != nil {
		return nil, toRPC(err)
	}
	ext := r.GetSandbox().GetExtensions()[updatedResourcesKey]
	if ext == nil {
		return &api.UpdateSandboxResponse{}, nil
	}
	if ext.GetTypeUrl() != updatedResourcesType {
		return nil, toRPC(invalidf("extension %s of type %q: want %s", updatedResourcesKey, ext.GetTypeUrl(), updatedResourcesType))
	}
	var upd struct {
		Overhead, Resources *linuxResources
	}
	if err := json.Unmarshal(ext.GetValue(), &upd); err != nil {
		return nil, toRPC(invalidf("decode %s: %v", updatedResourcesType, err))
	}
	if upd.Resources == nil {
		return &api.UpdateSandboxResponse{}, nil
	}
	var overhead linuxResources
	if upd.Overhead != nil {
		overhead = *upd.Overhead
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	sb.mu.Lock()
	cg := sb.podCgroup
	sb.mu.Unlock()
	if cg == nil {
		return nil, toRPC(withKind(errdefs.ErrFailedPrecondition, fmt.Errorf("sandbox %s has no pod cgroup (no cgroup_parent) to update", sb.id)))
	}
	if err := cg.Update(upd.Resources.plus(overhead)); err != nil {
		return nil, toRPC(fmt.Errorf("update the cgroup of sandbox %s: %w", sb.id, err))
	}
	return &api.UpdateSandboxResponse{}, nil
}
