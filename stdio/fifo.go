package stdio

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Opening a fifo never blocks here: see the package comment. Every handle is
// opened with O_NONBLOCK, so it sits on Go's poller.

// openOutputFifo opens an output fifo: first a read handle the shim keeps
// (open(2) of a reader with O_NONBLOCK never blocks), then the write handle,
// which a non-blocking open grants at once because a reader now exists. The
// kept reader means the fifo always has a reader, so the shim's writes never
// fail with EPIPE when the client goes away (they wait instead).
func openOutputFifo(path string) (w, keep *os.File, err error) {
	keep, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open output fifo %s for reading: %w", path, err)
	}
	if err := checkFifo(keep); err != nil {
		keep.Close()
		return nil, nil, err
	}
	w, err = os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		keep.Close()
		return nil, nil, fmt.Errorf("open output fifo %s for writing: %w", path, err)
	}
	growPipe(w, outputPipeSize)
	return w, keep, nil
}

// openStdinFifo opens the read handle of the stdin fifo, the one the copy
// reads.
func openStdinFifo(path string) (*os.File, error) {
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdin fifo %s for reading: %w", path, err)
	}
	if err := checkFifo(r); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// openStdinKeep opens the write handle the shim keeps on the stdin fifo. The
// shim's read handle is open, so a non-blocking open succeeds at once.
func openStdinKeep(path string) (*os.File, error) {
	keep, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdin fifo %s for writing: %w", path, err)
	}
	return keep, nil
}

// checkFifo refuses anything but a fifo: a regular file or a device in its
// place would behave differently in every way that matters here.
func checkFifo(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is not a fifo (mode %s)", f.Name(), fi.Mode())
	}
	return nil
}
