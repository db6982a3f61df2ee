package shim

import (
	"bufio"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// idleTrimDelay is how long the shim must be idle before it trims.
const idleTrimDelay = time.Second

// settleDelay bounds how long a new shim runs with the runtime's own
// collector pace (GOGC 100, and no collection below a 4 MB heap) before
// gcPercent: its start-up is its sandbox or first container and the
// protobuf and JSON tables they need, about 2 MB of allocations in a burst.
// With gcPercent from the start (a 1 MB minimum heap) that burst ran 2 or 3
// collections in the shim's first 100 ms, on the critical path of the
// pod's start, and the shim kept more of what it had touched: 20 polled pods
// (make bench's, containerd 2.4) held 4.57 MB PSS per shim, against 3.80-3.86
// MB settled later. A polled shim is never idle for idleTrimDelay, hence the
// bound.
const settleDelay = 2 * time.Second

// gcPercent is the serving shim's GOGC once settled. Its live heap is under
// 1 MB, and with the default 100 the garbage of requests would grow the heap
// to the runtime's 4 MB minimum between collections. A shim polled every
// second (containerd 2.4 reads each sandbox's metrics, kubelet each
// container's stats) is never idle for idleTrimDelay and holds what its
// heap grows to; its polls make little garbage (cgroup.AppendMetrics), so 25
// costs few collections. Trimming after every poll instead (a full
// collection and scavenge, and the next poll's page faults) held 0.7 MB
// less for 4 times the CPU. GOGC in the shim's environment wins.
const gcPercent = 25

// trimmer gives memory back once the shim has been idle for a while: the
// pages of its own binary that serving touched (start-up, protobuf
// registration, the code of the last requests) are dropped from its page
// tables, to be faulted back from the page cache when used again, and the
// Go heap returns what it has freed to the kernel. A shim spends almost all
// of its life idle, holding only what the next request needs.
type trimmer struct {
	ranges [][2]uintptr // read-only mappings of the shim's binary

	settled atomic.Bool // the collector is at gcPercent

	mu     sync.Mutex // guards timer
	timer  *time.Timer
	settle *time.Timer // settles the pace once settleDelay has passed
}

func newTrimmer() *trimmer {
	t := &trimmer{ranges: binaryMappings()}
	t.timer = time.AfterFunc(idleTrimDelay, t.trim)
	t.settle = time.AfterFunc(settleDelay, func() {
		if !t.settled.Load() {
			t.trim()
		}
	})
	return t
}

// touch notes activity: the trim waits for idleTrimDelay after the last one.
func (t *trimmer) touch() {
	t.mu.Lock()
	t.timer.Reset(idleTrimDelay)
	t.mu.Unlock()
}

// trim settles the collector's pace if it was not yet, and gives back what
// the shim does not use.
func (t *trimmer) trim() {
	if !t.settled.Swap(true) && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	debug.FreeOSMemory()
	// The shim is idle: what it holds now is what it keeps. A leak soak
	// compares these figures (and the process's fds, threads and PSS, which
	// it reads from /proc) from one idle moment to the next. Logged before
	// the pages are dropped: writing the line would fault some back in.
	slog.Debug("idle", "goroutines", runtime.NumGoroutine())
	for _, r := range t.ranges {
		// Clean, read-only file pages: dropping them loses nothing.
		unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// binaryMappings lists the read-only mappings of the running executable.
func binaryMappings() [][2]uintptr {
	self, err := os.Executable()
	if err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ranges [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != self || strings.Contains(fields[1], "w") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 == nil && err2 == nil && hi > lo {
			ranges = append(ranges, [2]uintptr{uintptr(lo), uintptr(hi)})
		}
	}
	return ranges
}

// stop stops the trimmer's timers (tests).
func (t *trimmer) stop() {
	t.mu.Lock()
	t.timer.Stop()
	t.mu.Unlock()
	t.settle.Stop()
}
