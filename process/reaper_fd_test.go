package process

import (
	"errors"
	"os"
	"os/exec"
	"runtime/debug"
	"syscall"
	"testing"
)

// openFDs counts the test process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A command run through the reaper leaves no descriptor behind: the pidfd
// os/exec opens for it is closed once the reaper collected the child, not
// whenever the garbage collector gets to it (it is kept off here, so that
// nothing but the reaper can close one). Signalling the command afterwards
// fails and reaches no other process.
func TestReaperRunLeavesNoPidfd(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	r := Default()
	// Warm up: whatever the first commands open once (the reaper's signal
	// loop, the runtime's pidfd probe) is not a leak.
	for range 3 {
		if _, err := r.Run(exec.Command("true")); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	before := openFDs(t)
	var last *exec.Cmd
	for range n {
		last = exec.Command("true")
		if status, err := r.Run(last); err != nil || status != 0 {
			t.Fatalf("status %d err %v", status, err)
		}
	}
	after := openFDs(t)
	if after-before > 2 {
		t.Errorf("%d descriptors open after %d runtime calls, %d before: one leaks per call", after, n, before)
	}
	err := last.Process.Signal(syscall.SIGKILL)
	if err == nil {
		t.Error("signalling a reaped command succeeded")
	}
	if errors.Is(err, syscall.EPERM) {
		t.Errorf("signalling a reaped command reached some process: %v", err)
	}
}
