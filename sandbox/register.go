package sandbox

import (
	"context"

	"github.com/containerd/ttrpc"
)

// serviceName is the name containerd calls the sandbox API by.
const serviceName = "containerd.runtime.sandbox.v1.Sandbox"

func method[Req any, Resp any](fn func(context.Context, *Req) (Resp, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := new(Req)
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}

// Register serves the sandbox API on srv, under containerd's service name,
// with the messages of package api (same wire format as containerd's).
func (s *Service) Register(srv *ttrpc.Server) {
	srv.RegisterService(serviceName, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"CreateSandbox":   method(s.CreateSandbox),
		"StartSandbox":    method(s.StartSandbox),
		"Platform":        method(s.Platform),
		"StopSandbox":     method(s.StopSandbox),
		"WaitSandbox":     method(s.WaitSandbox),
		"SandboxStatus":   method(s.SandboxStatus),
		"PingSandbox":     method(s.PingSandbox),
		"ShutdownSandbox": method(s.ShutdownSandbox),
		"SandboxMetrics":  method(s.SandboxMetrics),
		"UpdateSandbox":   method(s.UpdateSandbox),
	}})
}
