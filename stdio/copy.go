package stdio

import (
	"errors"
	goio "io"
	"os"
	"sync"
	"syscall"
)

// bufPool holds the 32 KiB buffers of the read/write copies, so that idle
// processes hold none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyStream moves src to dst until src reaches EOF: with splice(2) where
// the kernel can, else with read(2) and write(2).
func copyStream(dst, src *os.File) (int64, error) {
	n, err := spliceCopy(dst, src)
	if !errors.Is(err, errSpliceUnsupported) {
		return n, err
	}
	m, err := bufferedCopy(dst, src, false)
	return n + m, err
}

// bufferedCopy copies src to dst through a pooled buffer until EOF. With
// eioIsEOF, EIO from src is EOF too: that is how a pty master reports that
// the last slave closed. It calls Read and Write itself rather than io.Copy,
// which would hand *os.File back to sendfile or splice.
func bufferedCopy(dst goio.Writer, src goio.Reader, eioIsEOF bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, goio.ErrShortWrite
			}
		}
		switch {
		case rerr == nil:
		case rerr == goio.EOF:
			return total, nil
		case eioIsEOF && errors.Is(rerr, syscall.EIO):
			return total, nil
		default:
			return total, rerr
		}
	}
}
