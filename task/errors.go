package task

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// kindError gives an error an errdefs kind without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error { return &kindError{kind: kind, err: err} }

// toRPC maps an error to the errdefs kind containerd expects, at the RPC
// boundary only.
func toRPC(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errdefs.IsNotFound(err), errdefs.IsAlreadyExists(err), errdefs.IsInvalidArgument(err),
		errdefs.IsFailedPrecondition(err), errdefs.IsNotImplemented(err):
		// already has a kind
	case errors.Is(err, process.ErrExited), errors.Is(err, process.ErrDeleted):
		kind = errdefs.ErrNotFound
	case errors.Is(err, process.ErrWrongState), errors.Is(err, process.ErrRuntimeMissing), errors.Is(err, pod.ErrInUse):
		kind = errdefs.ErrFailedPrecondition
	case errors.Is(err, pod.ErrInvalidID), errors.Is(err, pod.ErrConflict), errors.Is(err, pod.ErrInvalidSpec):
		kind = errdefs.ErrInvalidArgument
	}
	if kind != nil {
		err = withKind(kind, err)
	}
	return errgrpc.ToGRPC(err)
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
