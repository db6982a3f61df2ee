package shim

import (
	"sync"
	"testing"
	"time"
)

// An exiting shim waits for its clients to hang up (they do once they have
// the reply to their Shutdown), and no longer than its bound.
func TestLifecycleWaitHangUp(t *testing.T) {
	l := newLifecycle("", "t1", nil)
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

// A reservation released by its task's Shutdown does not wake the shim
// later: its timer is stopped (waking faults an idle shim's pages back in).
func TestReleasedReservationDoesNotWakeTheShim(t *testing.T) {
	saved := reservationTTL
	reservationTTL = 20 * time.Millisecond
	t.Cleanup(func() { reservationTTL = saved })
	var mu sync.Mutex
	checks := 0
	l := newLifecycle("", "t1", nil)
	l.busy = func() bool {
		mu.Lock()
		defer mu.Unlock()
		checks++
		return true // a container: the shim stays
	}
	l.accepted() // containerd's connection: only an asked-for exit is checked
	l.requestExit("t1")
	// The check that requestExit runs, and nothing after the reservation
	// would have expired.
	waitFor := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := checks
		mu.Unlock()
		if n >= 1 || time.Now().After(waitFor) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * reservationTTL) // the expiry a live timer would have fired at
	mu.Lock()
	defer mu.Unlock()
	if checks != 1 {
		t.Errorf("the shim was checked %d times; want once, for the Shutdown (the released reservation's timer fired)", checks)
	}
}
