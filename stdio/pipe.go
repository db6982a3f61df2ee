package stdio

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newPipe returns a close-on-exec pipe. An end that the shim itself reads or
// writes is made non-blocking, which puts it on Go's runtime poller; an end
// that goes to another process (the container, a logger) must stay blocking,
// because O_NONBLOCK belongs to the open file description and so to every
// process that shares it.
func newPipe(readNonblock, writeNonblock bool) (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe2: %w", err)
	}
	for i, nb := range []bool{readNonblock, writeNonblock} {
		if !nb {
			continue
		}
		if err := unix.SetNonblock(fds[i], true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, nil, fmt.Errorf("set pipe non-blocking: %w", err)
		}
	}
	// os.NewFile sees O_NONBLOCK and registers such an end with the poller.
	return os.NewFile(uintptr(fds[0]), "|0"), os.NewFile(uintptr(fds[1]), "|1"), nil
}

// outputPipeSize is what output pipes and fifos are grown to. With the
// default 64 KiB a relayed stream costs a wakeup on each side per 64 KiB and
// moves about half as fast; pages are only used while data waits, so the
// cost is paid only when a client stalls.
const outputPipeSize = 256 << 10

// growPipe asks for a pipe buffer of at least size, best effort: without
// CAP_SYS_RESOURCE the kernel may refuse (pipe-user-pages-soft), and a
// smaller pipe is only slower. It never shrinks one that is already bigger
// (a client may have grown its fifo).
func growPipe(f *os.File, size int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if cur, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && cur < size {
			unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
		}
	})
}

// fchown gives f to uid:gid, -1 leaving either unchanged, so that a process in
// a user namespace may reopen its stdio through /proc/self/fd.
func fchown(f *os.File, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Fchown(int(fd), uid, gid) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("fchown %s to %d:%d: %w", f.Name(), uid, gid, cerr)
	}
	return nil
}

// closeAll closes every non-nil file, ignoring errors: it is for cleanup
// paths where the files' fate does not matter any more.
func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
