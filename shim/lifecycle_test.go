package shim

import (
	"testing"
	"time"
)

// An exiting shim waits for its clients to hang up (they do once they have
// the reply to their Shutdown), and no longer than its bound.
func TestLifecycleWaitHangUp(t *testing.T) {
	l := newLifecycle("", "t1")
	start := time.Now()
	l.waitHangUp(time.Hour)
	if time.Since(start) > 10*time.Second {
		t.Fatal("waited with no client connected")
	}
	l.accepted()
	l.accepted()
	done := make(chan struct{})
	go func() {
		l.waitHangUp(time.Hour)
		close(done)
	}()
	l.closed()
	select {
	case <-done:
		t.Fatal("returned with a client still connected")
	case <-time.After(50 * time.Millisecond):
	}
	l.closed()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("did not return once every client hung up")
	}
	l.accepted()
	start = time.Now()
	l.waitHangUp(20 * time.Millisecond)
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("returned before its bound with a client connected")
	}
}
