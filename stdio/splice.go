package stdio

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// spliceFlags: never sleep in the kernel (the Go poller waits instead),
	// and move pages rather than copy them where the kernel can.
	spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE
	// spliceMax is what one call asks for; the kernel moves at most what
	// the source pipe holds and the destination pipe has room for.
	spliceMax = 1 << 20
	// splicesPerTurn bounds the calls made while holding both files'
	// references, so that closing either never waits long for a busy copy.
	splicesPerTurn = 32
)

// errSpliceUnsupported says the kernel cannot splice between the two files
// (EINVAL: a destination opened O_APPEND, a tty, ...). Nothing was lost: the
// failing call moved no byte.
var errSpliceUnsupported = errors.New("splice not supported between these files")

// spliceState is how one turn of splicing ended.
type spliceState int

const (
	spliceMore        spliceState = iota // a turn's worth moved: go again
	spliceNeedRead                       // the source is empty: wait for it
	spliceNeedWrite                      // the destination is full: wait for it
	spliceEOF                            // the source has no writer left and is empty
	spliceUnsupported                    // EINVAL: fall back to read/write
	spliceFailed                         // any other error
)

// spliceCopy moves everything from src to dst with splice(2) until src
// reaches EOF. Both must be pipes (a fifo is one) opened non-blocking, so
// that they are on Go's poller. A goroutine in here waits on one file at a
// time and never holds the other's reference while it waits, so a Close of
// either file returns promptly and ends the copy.
func spliceCopy(dst, src *os.File) (int64, error) {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("splice from %s: %w", src.Name(), err)
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("splice to %s: %w", dst.Name(), err)
	}
	var total int64
	for {
		var (
			state spliceState
			opErr error
		)
		// The source's Read calls the function again each time the poller
		// says the source became readable; returning false waits for that.
		rerr := srcRC.Read(func(sfd uintptr) bool {
			// The destination's Write is only used for its fd: the
			// function always returns true, so it never waits in here.
			werr := dstRC.Write(func(dfd uintptr) bool {
				var n int64
				n, state, opErr = spliceTurn(int(sfd), int(dfd))
				total += n
				return true
			})
			if werr != nil {
				state, opErr = spliceFailed, werr
				return true
			}
			return state != spliceNeedRead
		})
		if rerr != nil {
			return total, fmt.Errorf("splice from %s: %w", src.Name(), rerr)
		}
		switch state {
		case spliceEOF:
			return total, nil
		case spliceUnsupported:
			return total, errSpliceUnsupported
		case spliceFailed:
			return total, fmt.Errorf("splice %s to %s: %w", src.Name(), dst.Name(), opErr)
		case spliceNeedWrite:
			if err := waitWritable(dstRC); err != nil {
				return total, fmt.Errorf("wait for %s: %w", dst.Name(), err)
			}
		}
	}
}

// spliceTurn makes up to splicesPerTurn splice calls from sfd to dfd.
func spliceTurn(sfd, dfd int) (moved int64, state spliceState, err error) {
	srcHadData := false
	for calls := 0; calls < splicesPerTurn; {
		n, err := unix.Splice(sfd, nil, dfd, nil, spliceMax, spliceFlags)
		switch {
		case err == nil && n > 0:
			moved += n
			calls++
			srcHadData = false
		case err == nil:
			return moved, spliceEOF, nil
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			// Either the source is empty with writers left, or the
			// destination is full (which splice also reports when the
			// source is empty and at EOF). Ask the source.
			if srcHadData {
				return moved, spliceNeedWrite, nil
			}
			switch pipeState(sfd) {
			case pipeEmpty:
				return moved, spliceNeedRead, nil
			case pipeDrained:
				return moved, spliceEOF, nil
			}
			// Data there: it may have come just after the call, so try
			// once more before blaming the destination (only this copy
			// reads the source).
			srcHadData = true
		case err == unix.EINVAL:
			return moved, spliceUnsupported, nil
		default:
			return moved, spliceFailed, err
		}
	}
	return moved, spliceMore, nil
}

// pipeStatus is what a pipe's reader sees, right now.
type pipeStatus int

const (
	pipeHasData pipeStatus = iota // something to read
	pipeEmpty                     // nothing yet, writers left
	pipeDrained                   // nothing, and no writer left: EOF
)

// pipeState polls the read side of a pipe without waiting. POLLHUP without
// POLLIN is EOF; an error reads as data, so that the next splice reports it.
func pipeState(fd int) pipeStatus {
	switch ev := pollIn(fd); {
	case ev&(unix.POLLIN|unix.POLLERR|unix.POLLNVAL) != 0:
		return pipeHasData
	case ev&unix.POLLHUP != 0:
		return pipeDrained
	}
	return pipeEmpty
}

// pollIn polls fd for reading without waiting and returns what it reports.
func pollIn(fd int) int16 {
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return unix.POLLERR
		}
		return fds[0].Revents
	}
}

// waitWritable waits until the poller says rc's file can take data. The
// level is checked with poll(2) after the poller's state was reset, so an
// edge is never missed: either it is writable now, or the next edge wakes us.
func waitWritable(rc syscall.RawConn) error {
	return rc.Write(func(fd uintptr) bool {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			// An error, POLLERR or POLLHUP also ends the wait: the next
			// splice reports what is wrong.
			return err != nil || n > 0
		}
	})
}
