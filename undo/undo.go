// Package undo is the undo stack of an operation made of steps (a Create,
// a CreateSandbox): each step registers its own undo as soon as it has
// succeeded, so that a failure at any step undoes the steps before it, the
// last first, and leaves nothing behind.
package undo

import (
	"errors"
	"log/slog"
)

// Stack holds the undos of the steps done so far.
type Stack []func() error

// Push registers the undo of a step that succeeded.
func (s *Stack) Push(undo func() error) { *s = append(*s, undo) }

// Unwind runs the undos, the last step's first, and returns cause joined
// with whatever could not be undone.
func (s Stack) Unwind(cause error) error {
	errs := []error{cause}
	for i := len(s) - 1; i >= 0; i-- {
		if err := s[i](); err != nil {
			slog.Error("undo after a failed step", "cause", cause, "error", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
