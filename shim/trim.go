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
	"time"

	"golang.org/x/sys/unix"
)

// idleTrimDelay is how long the shim must be idle before it trims.
const idleTrimDelay = time.Second

// gcPercent is the serving shim's GOGC. Its live heap is about 1 MB, and
// with the default 100 the garbage of requests grows the heap to the
// runtime's 4 MB minimum between collections. A shim polled every second
// (containerd 2.4 reads each sandbox's metrics, kubelet each container's
// stats) is never idle for idleTrimDelay and held that: 7.1 MB PSS per pod of
// 20 polled pods (make bench); with 25, 5.3 MB for 8% more CPU. Trimming
// after every poll instead (a 200 ms idle delay) got 4.5 MB, at 2.6 times
// the reference shim's CPU: a full collection and the next poll's page
// faults, every second. GOGC in the shim's environment wins.
const gcPercent = 25

// trimmer gives memory back once the shim has been idle for a while: the
// pages of its own binary that serving touched (start-up, protobuf
// registration, the code of the last requests) are dropped from its page
// tables, to be faulted back from the page cache when used again, and the
// Go heap returns what it has freed to the kernel. A shim spends almost all
// of its life idle, holding only what the next request needs.
type trimmer struct {
	ranges [][2]uintptr // read-only mappings of the shim's binary

	mu    sync.Mutex // guards timer
	timer *time.Timer
}

func newTrimmer() *trimmer {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	t := &trimmer{ranges: binaryMappings()}
	t.timer = time.AfterFunc(idleTrimDelay, t.trim)
	return t
}

// touch notes activity: the trim waits for idleTrimDelay after the last one.
func (t *trimmer) touch() {
	t.mu.Lock()
	t.timer.Reset(idleTrimDelay)
	t.mu.Unlock()
}

func (t *trimmer) trim() {
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
