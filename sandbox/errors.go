package sandbox

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/podv2/containerd-shim-pod-v2/errkind"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
)

func withKind(kind, err error) error { return errkind.With(kind, err) }

func notFound(format string, args ...any) error {
	return withKind(errdefs.ErrNotFound, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) error {
	return withKind(errdefs.ErrFailedPrecondition, fmt.Errorf(format, args...))
}

// toRPC maps an error to the errdefs kind containerd expects, at the RPC
// boundary only.
func toRPC(err error) error { return errkind.ToRPC(err, sandboxKind) }

// sandboxKind is the kind of the errors of the shim's packages that have
// none.
func sandboxKind(err error) error {
	switch {
	case errors.Is(err, errInvalid), errors.Is(err, pod.ErrInvalidID), errors.Is(err, pod.ErrInvalidSpec),
		errors.Is(err, pod.ErrConflict):
		return errdefs.ErrInvalidArgument
	case errors.Is(err, podproc.ErrNoEntry), errors.Is(err, podproc.ErrUnsupported):
		return errdefs.ErrFailedPrecondition
	}
	return nil
}
