package sandbox

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
)

// kindError gives an error an errdefs kind without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error { return &kindError{kind: kind, err: err} }

func notFound(format string, args ...any) error {
	return withKind(errdefs.ErrNotFound, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) error {
	return withKind(errdefs.ErrFailedPrecondition, fmt.Errorf(format, args...))
}

// toRPC maps an error to the errdefs kind containerd expects, at the RPC
// boundary only.
func toRPC(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errdefs.IsNotFound(err), errdefs.IsAlreadyExists(err), errdefs.IsInvalidArgument(err),
		errdefs.IsFailedPrecondition(err), errdefs.IsNotImplemented(err), errdefs.IsUnavailable(err):
	case errors.Is(err, errInvalid), errors.Is(err, pod.ErrInvalidID), errors.Is(err, pod.ErrInvalidSpec),
		errors.Is(err, pod.ErrConflict):
		kind = errdefs.ErrInvalidArgument
	case errors.Is(err, podproc.ErrNoEntry), errors.Is(err, podproc.ErrUnsupported):
		kind = errdefs.ErrFailedPrecondition
	}
	if kind != nil {
		err = withKind(kind, err)
	}
	return errgrpc.ToGRPC(err)
}
