package stdio

import (
	"sync"
	"time"
)

// tracker counts what Wait waits for: output copies still running and a
// logger still alive.
type tracker struct {
	mu sync.Mutex
	// mu guards n and idle; idle is closed exactly when n is 0.
	n    int
	idle chan struct{}
}

func newTracker() *tracker {
	idle := make(chan struct{})
	close(idle)
	return &tracker{idle: idle}
}

func (t *tracker) add() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

// wait reports whether everything ended within timeout.
func (t *tracker) wait(timeout time.Duration) bool {
	t.mu.Lock()
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return true
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-idle:
		return true
	case <-timer.C:
		return false
	}
}
