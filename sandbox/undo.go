package sandbox

import (
	"errors"
	"log/slog"
)

// undoStack holds the undo of each step of CreateSandbox or StartSandbox
// done so far: a failure at any step undoes the steps before it, the last
// first, so that nothing is left and the same id can be created again.
type undoStack []func() error

func (u *undoStack) push(undo func() error) { *u = append(*u, undo) }

// unwind runs the undos and returns cause joined with what could not be undone.
func (u undoStack) unwind(cause error) error {
	errs := []error{cause}
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil {
			slog.Error("undo after a failed sandbox step", "cause", cause, "error", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
