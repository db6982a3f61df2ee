package task

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/podv2/containerd-shim-pod-v2/errkind"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

func withKind(kind, err error) error { return errkind.With(kind, err) }

// toRPC maps an error to the errdefs kind containerd expects, at the RPC
// boundary only.
func toRPC(err error) error { return errkind.ToRPC(err, taskKind) }

// taskKind is the kind of the errors of the shim's packages that have none.
func taskKind(err error) error {
	switch {
	case errors.Is(err, process.ErrExited), errors.Is(err, process.ErrDeleted):
		return errdefs.ErrNotFound
	case errors.Is(err, process.ErrWrongState), errors.Is(err, process.ErrRuntimeMissing), errors.Is(err, pod.ErrInUse):
		return errdefs.ErrFailedPrecondition
	case errors.Is(err, pod.ErrInvalidID), errors.Is(err, pod.ErrConflict), errors.Is(err, pod.ErrInvalidSpec):
		return errdefs.ErrInvalidArgument
	}
	return nil
}

func notFound(format string, args ...any) error {
	return withKind(errdefs.ErrNotFound, fmt.Errorf(format+": not found", args...))
}

func invalid(format string, args ...any) error {
	return withKind(errdefs.ErrInvalidArgument, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) error {
	return withKind(errdefs.ErrFailedPrecondition, fmt.Errorf(format, args...))
}

func alreadyExists(format string, args ...any) error {
	return withKind(errdefs.ErrAlreadyExists, fmt.Errorf(format+": already exists", args...))
}
