package sandbox

import (
	"errors"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

func TestExitWatch(t *testing.T) {
	exits := make(chan process.Exit)
	w := newExitWatch(exits)
	got := make(chan process.Exit, 4)

	// An exit that comes before the start returns its pid is kept for it.
	pid, err := w.during(func() (int, error) {
		exits <- process.Exit{Pid: 10, Status: 137}
		exits <- process.Exit{Pid: 11, Status: 1} // someone else's
		return 10, nil
	}, func(e process.Exit) { got <- e })
	if err != nil || pid != 10 {
		t.Fatal(pid, err)
	}
	if e := <-got; e.Pid != 10 || e.Status != 137 {
		t.Fatalf("early exit = %+v", e)
	}
	// One that comes after, once; strangers' exits are not kept.
	if _, err := w.during(func() (int, error) { return 20, nil }, func(e process.Exit) { got <- e }); err != nil {
		t.Fatal(err)
	}
	exits <- process.Exit{Pid: 11}
	exits <- process.Exit{Pid: 20, Status: 0}
	exits <- process.Exit{Pid: 20, Status: 9} // a reused pid: not ours any more
	select {
	case e := <-got:
		if e.Pid != 20 || e.Status != 0 {
			t.Fatalf("exit = %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exit not delivered")
	}
	w.mu.Lock()
	left := len(w.watched) + len(w.unclaimed)
	w.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d entries left", left)
	}
	// A failed start watches nothing.
	if _, err := w.during(func() (int, error) { return 0, errors.New("no") }, func(process.Exit) { t.Error("called") }); err == nil {
		t.Fatal("error lost")
	}
}
