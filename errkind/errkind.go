// Package errkind gives errors the errdefs kinds containerd expects, at the
// RPC boundary of the task and sandbox services, without changing their
// messages.
package errkind

import (
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
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
func ToRPC(err error, classify func(error) error) error {
	if err == nil {
		return nil
	}
	if !hasKind(err) {
		if kind := classify(err); kind != nil {
			err = With(kind, err)
		}
	}
	return errgrpc.ToGRPC(err)
}

func hasKind(err error) bool {
	return errdefs.IsNotFound(err) || errdefs.IsAlreadyExists(err) || errdefs.IsInvalidArgument(err) ||
		errdefs.IsFailedPrecondition(err) || errdefs.IsNotImplemented(err) || errdefs.IsUnavailable(err)
}
