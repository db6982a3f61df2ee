package task

import (
	"github.com/containerd/ttrpc"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// The task API is served under both names: containerd.task.v3.Task has the
// same messages as v2. Building the v3 description from the v2 types keeps
// the v3 package, and the gRPC code generated into it, out of the binary.
var serviceNames = []string{"containerd.task.v2.Task", "containerd.task.v3.Task"}

func registerTaskService(srv *ttrpc.Server, svc *Service) {
	desc := &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"State":      wire.Method(svc.State),
		"Create":     wire.Method(svc.Create),
		"Start":      wire.Method(svc.Start),
		"Delete":     wire.Method(svc.Delete),
		"Pids":       wire.Method(svc.Pids),
		"Pause":      wire.Method(svc.Pause),
		"Resume":     wire.Method(svc.Resume),
		"Checkpoint": wire.Method(svc.Checkpoint),
		"Kill":       wire.Method(svc.Kill),
		"Exec":       wire.Method(svc.Exec),
		"ResizePty":  wire.Method(svc.ResizePty),
		"CloseIO":    wire.Method(svc.CloseIO),
		"Update":     wire.Method(svc.Update),
		"Wait":       wire.Method(svc.Wait),
		"Stats":      wire.Method(svc.Stats),
		"Connect":    wire.Method(svc.Connect),
		"Shutdown":   wire.Method(svc.Shutdown),
	}}
	for _, name := range serviceNames {
		srv.RegisterService(name, desc)
	}
}
