package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// A shim's goroutine count is not visible from outside the process. Ours
// logs it at debug level at the end of each request (msg=request ...
// goroutines=N) and when it has been idle for a second and trimmed itself
// (msg=idle goroutines=N). The reference shim logs a dump of all its
// goroutines when it gets SIGUSR1. Both reach the daemon's log through the
// shim's log fifo.
var (
	podRequestLine = regexp.MustCompile(`msg=request .*pid=(\d+) .*goroutines=(\d+)`)
	podIdleLine    = regexp.MustCompile(`msg=idle .*pid=(\d+) goroutines=(\d+)`)
	stackDumpLine  = regexp.MustCompile(`=== BEGIN goroutine stack dump ===`)
	stackDumpEntry = regexp.MustCompile(`goroutine \d+ \[`)
)

// podShimState is the last thing one of our shims logged.
type podShimState struct {
	goroutines int
	idle       bool // the last line was an idle line
	seq        int  // the line's number in the log
}

// shimLog follows a daemon's log as it grows.
type shimLog struct {
	r       *bufio.Reader
	f       *os.File
	partial string
	seq     int
	pod     map[int]podShimState
	dumps   int // reference stack dumps seen
	dumpGs  int // goroutines in the last of them
}

func openShimLog(path string) (*shimLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &shimLog{f: f, r: bufio.NewReaderSize(f, 1<<20), pod: map[int]podShimState{}}, nil
}

func (l *shimLog) Close() error { return l.f.Close() }

// update reads what the log gained since the last call.
func (l *shimLog) update() error {
	for {
		s, err := l.r.ReadString('\n')
		if err == io.EOF {
			l.partial += s // the rest of the line is still being written
			return nil
		}
		if err != nil {
			return err
		}
		line := l.partial + s
		l.partial = ""
		l.seq++
		if m := podRequestLine.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			n, _ := strconv.Atoi(m[2])
			l.pod[pid] = podShimState{goroutines: n, seq: l.seq}
		} else if m := podIdleLine.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			n, _ := strconv.Atoi(m[2])
			l.pod[pid] = podShimState{goroutines: n, idle: true, seq: l.seq}
		} else if stackDumpLine.MatchString(line) {
			l.dumps++
			l.dumpGs = len(stackDumpEntry.FindAllStringIndex(line, -1))
		}
	}
}

// podGoroutines is the count in the last line one of our shims logged.
func (l *shimLog) podGoroutines(pid int) (int, error) {
	if err := l.update(); err != nil {
		return 0, err
	}
	st, ok := l.pod[pid]
	if !ok {
		return 0, fmt.Errorf("no request line of shim %d in the log: is it logging at debug level?", pid)
	}
	return st.goroutines, nil
}

// waitPodIdle waits until one of our shims logs, after everything seen so
// far, that it is idle and trimmed, and returns its goroutine count then.
func (l *shimLog) waitPodIdle(pid int, timeout time.Duration) (int, error) {
	if err := l.update(); err != nil {
		return 0, err
	}
	from := l.seq
	deadline := time.Now().Add(timeout)
	for {
		if st := l.pod[pid]; st.idle && st.seq > from {
			// The shim drops its binary's pages right after it logs the line.
			time.Sleep(100 * time.Millisecond)
			return st.goroutines, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("shim %d did not log idle within %v", pid, timeout)
		}
		time.Sleep(100 * time.Millisecond)
		if err := l.update(); err != nil {
			return 0, err
		}
	}
}

// dumpGoroutines has a reference shim log its goroutines and counts them.
func (l *shimLog) dumpGoroutines(pid int, timeout time.Duration) (int, error) {
	if err := l.update(); err != nil {
		return 0, err
	}
	before := l.dumps
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return 0, fmt.Errorf("SIGUSR1 to %d: %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for l.dumps == before {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("shim %d logged no stack dump within %v", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
		if err := l.update(); err != nil {
			return 0, err
		}
	}
	return l.dumpGs, nil
}
