package sandbox

import (
	"github.com/containerd/ttrpc"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// serviceName is the name containerd calls the sandbox API by.
const serviceName = "containerd.runtime.sandbox.v1.Sandbox"

// Register serves the sandbox API on srv, under containerd's service name,
// with the messages of package api (same wire format as containerd's).
func (s *Service) Register(srv *ttrpc.Server) {
	srv.RegisterService(serviceName, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"CreateSandbox":   wire.Method(s.CreateSandbox),
		"StartSandbox":    wire.Method(s.StartSandbox),
		"Platform":        wire.Method(s.Platform),
		"StopSandbox":     wire.Method(s.StopSandbox),
		"WaitSandbox":     wire.Method(s.WaitSandbox),
		"SandboxStatus":   wire.Method(s.SandboxStatus),
		"PingSandbox":     wire.Method(s.PingSandbox),
		"ShutdownSandbox": wire.Method(s.ShutdownSandbox),
		"SandboxMetrics":  wire.Method(s.SandboxMetrics),
		"UpdateSandbox":   wire.Method(s.UpdateSandbox),
	}})
}
