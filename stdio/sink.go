package stdio

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// sink is where output goes: a client's fifo, a file, or (for a terminal
// with a logger) the logger's pipe. stdout and stderr share one sink when
// they name the same place, so one handle serves both.
type sink struct {
	name string
	w    *os.File // what the copies write
	keep *os.File // fifo only: a read handle kept so writes never fail with EPIPE

	mu sync.Mutex
	// mu guards users, the streams that still write to w. The last one to
	// finish closes w, which is the EOF the client waits for.
	users int
}

// openSink opens a fifo or file:// target for writing.
func openSink(t target) (*sink, error) {
	switch t.kind {
	case kindFifo:
		w, keep, err := openOutputFifo(t.path)
		if err != nil {
			return nil, err
		}
		return &sink{name: t.path, w: w, keep: keep}, nil
	case kindFile:
		if err := os.MkdirAll(filepath.Dir(t.path), 0o755); err != nil {
			return nil, fmt.Errorf("create directory for log file %s: %w", t.path, err)
		}
		f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log file %s: %w", t.path, err)
		}
		return &sink{name: t.path, w: f}, nil
	}
	return nil, fmt.Errorf("stdio URI %q: %s is not an output sink", t.uri, t.kind)
}

// addUser counts one more stream writing here.
func (s *sink) addUser() {
	s.mu.Lock()
	s.users++
	s.mu.Unlock()
}

// release says one stream is done; the last one closes the write handle.
func (s *sink) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users == 0 {
		s.w.Close()
	}
}

// close closes every handle, whoever still writes (Process.Close).
func (s *sink) close() {
	closeAll(s.w, s.keep)
}
