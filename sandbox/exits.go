package sandbox

import (
	"sync"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// exitWatch hands the pod's process its exit from the shim's reaper, which
// reports every child's. The process may end before the start that made it
// knows its pid: while a start is under way, exits of pids nobody watches are
// kept for it to claim.
type exitWatch struct {
	// mu guards everything below.
	mu        sync.Mutex
	watched   map[int]func(process.Exit)
	starting  int
	unclaimed map[int]process.Exit
}

func newExitWatch(exits <-chan process.Exit) *exitWatch {
	w := &exitWatch{watched: map[int]func(process.Exit){}, unclaimed: map[int]process.Exit{}}
	go w.run(exits)
	return w
}

func (w *exitWatch) run(exits <-chan process.Exit) {
	for e := range exits {
		w.mu.Lock()
		fn, ok := w.watched[e.Pid]
		if ok {
			delete(w.watched, e.Pid)
		} else if w.starting > 0 {
			w.unclaimed[e.Pid] = e
		}
		w.mu.Unlock()
		if ok {
			fn(e)
		}
	}
}

// during runs start, which starts a process and returns its pid, and has
// onExit called once with its exit, even one that came first.
func (w *exitWatch) during(start func() (int, error), onExit func(process.Exit)) (int, error) {
	w.mu.Lock()
	w.starting++
	w.mu.Unlock()
	pid, err := start()
	w.mu.Lock()
	w.starting--
	e, early := w.unclaimed[pid]
	if err == nil {
		if early {
			delete(w.unclaimed, pid)
		} else {
			w.watched[pid] = onExit
		}
	}
	if w.starting == 0 {
		clear(w.unclaimed)
	}
	w.mu.Unlock()
	if err == nil && early {
		onExit(e)
	}
	return pid, err
}
