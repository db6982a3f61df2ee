package task

import (
	"errors"
	"log/slog"
)

// undoStack holds the undo of every step a multi-step operation has done, so
// that a failure at any step leaves nothing of the steps before it: each
// step registers its own undo as soon as it has succeeded.
type undoStack []func() error

func (u *undoStack) push(undo func() error) { *u = append(*u, undo) }

// unwind runs the undos, the last step's first, and returns cause joined
// with whatever could not be undone.
func (u undoStack) unwind(cause error) error {
	errs := []error{cause}
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil {
			slog.Error("undo after a failed step", "cause", cause, "error", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
