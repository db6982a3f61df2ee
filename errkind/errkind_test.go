package errkind

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestWithKeepsMessageAndKind(t *testing.T) {
	base := errors.New("open /run/x: no such file")
	err := With(errdefs.ErrNotFound, fmt.Errorf("container c1: %w", base))
	if err.Error() != "container c1: open /run/x: no such file" {
		t.Fatalf("message changed: %q", err)
	}
	if !errdefs.IsNotFound(err) || !errors.Is(err, base) {
		t.Fatalf("kind or cause lost: %v", err)
	}
}

func TestToRPC(t *testing.T) {
	never := func(error) error { return nil }
	invalid := func(error) error { return errdefs.ErrInvalidArgument }
	plain := errors.New("bad id")
	for _, tc := range []struct {
		name     string
		err      error
		classify func(error) error
		is       func(error) bool
	}{
		{"own kind kept over classify", With(errdefs.ErrAlreadyExists, plain), invalid, errdefs.IsAlreadyExists},
		{"wrapped kind kept", fmt.Errorf("create: %w", With(errdefs.ErrFailedPrecondition, plain)), invalid, errdefs.IsFailedPrecondition},
		{"classified", plain, invalid, errdefs.IsInvalidArgument},
		{"unclassified is unknown", plain, never, errdefs.IsUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errgrpc.ToNative(ToRPC(tc.err, tc.classify))
			if !tc.is(got) {
				t.Fatalf("kind of %v after a round trip is wrong", got)
			}
			if !strings.Contains(got.Error(), tc.err.Error()) {
				t.Fatalf("message %q does not carry %q", got, tc.err)
			}
		})
	}
	// A kind as a wrapped chain, as errdefs and fmt build it, and a kind
	// given by With, which joins two errors: the status has no details.
	for _, err := range []error{
		fmt.Errorf("task t1: %w", errdefs.ErrNotFound),
		With(errdefs.ErrNotFound, plain),
		plain,
	} {
		st, ok := status.FromError(ToRPC(err, never))
		if !ok || len(st.Proto().GetDetails()) != 0 {
			t.Fatalf("status of %v: %v details (want a status, none)", err, st.Proto().GetDetails())
		}
	}
	already := status.Error(codes.NotFound, "gone")
	if ToRPC(already, invalid) != already {
		t.Fatal("a status was converted again")
	}
	if ToRPC(nil, invalid) != nil {
		t.Fatal("nil error became non-nil")
	}
}
