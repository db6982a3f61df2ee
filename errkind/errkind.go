// Package errkind gives errors the errdefs kinds containerd expects, at the
// RPC boundary of the task and sandbox services, without changing their
// messages.
package errkind

import (
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"
)

// kindError is an error with an errdefs kind and its own message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// With gives err the errdefs kind (errdefs.ErrNotFound, ...), keeping its
// message.
func With(kind, err error) error { return &kindError{kind: kind, err: err} }

// ToRPC turns err into what a ttrpc handler returns: an error that has a
// kind keeps it; else classify may give it one (nil: Unknown).
//
// The status holds the kind's code and err's message, nothing else.
// errgrpc.ToGRPC would also attach a detail per error err joins or wraps (a
// nested status, or an errdefs message, each in an Any), built by cloning
// protobuf messages: containerd needs only the code for the kind, and a
// polled pod fails one request a second by design (containerd 2.4 asks each
// shim for the stats of every task it knows, the sandbox id among them,
// which is no task: NotFound).
func ToRPC(err error, classify func(error) error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status
	}
	kind := errdefs.Resolve(err)
	if !hasKind(err) {
		if k := classify(err); k != nil {
			kind = k
		}
	}
	return status.Error(status.Code(errgrpc.ToGRPC(kind)), err.Error())
}

func hasKind(err error) bool {
	return errdefs.IsNotFound(err) || errdefs.IsAlreadyExists(err) || errdefs.IsInvalidArgument(err) ||
		errdefs.IsFailedPrecondition(err) || errdefs.IsNotImplemented(err) || errdefs.IsUnavailable(err)
}
