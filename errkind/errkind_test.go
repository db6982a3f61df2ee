package errkind

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
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
	if ToRPC(nil, invalid) != nil {
		t.Fatal("nil error became non-nil")
	}
}
