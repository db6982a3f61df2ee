package pod

import (
	"errors"
	"os/exec"
	"syscall"
)

// Runner starts and waits for the children the pod needs. The shim has one
// reaper (SIGCHLD, wait4(-1)); any other waiter races with it, so the shim
// passes its reaper here. Wait returns the exit code, or 128+signal.
type Runner interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) (int, error)
}

// DirectRunner starts and waits with os/exec itself, for tests and tools
// that have no reaper of their own.
type DirectRunner struct{}

// Start starts cmd.
func (DirectRunner) Start(cmd *exec.Cmd) error { return cmd.Start() }

// Wait waits for cmd. A non-zero exit is a status, not an error.
func (DirectRunner) Wait(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return -1, err
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return cmd.ProcessState.ExitCode(), nil
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}
