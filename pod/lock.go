//go:build linux

package pod

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive flock on the state dir itself, so that a live
// shim and `delete` processes (one per container of a dead shim's pod, maybe
// at once) read and write the pod's state one at a time.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock pod state dir %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
