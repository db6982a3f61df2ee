package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The shim logs, at debug level, each request's time and each runtime
// call's time (msg=request method=... took=..., msg=runtime op=... took=...).
var (
	requestLine = regexp.MustCompile(`msg=request .*pid=(\d+) method=(\S+) took=(\S+)`)
	runtimeLine = regexp.MustCompile(`msg=runtime .*pid=(\d+) op=(\S+) took=(\S+)`)
)

// shimTimes is what one shim process spent: in requests (Wait excluded: it
// lasts as long as the process) and, within them, in the runtime.
type shimTimes struct {
	requests, runtime time.Duration
	execSeen          bool // an Exec request was seen: count from there
}

// share measures how much of a container start and of an exec is the shim's
// own work, next to the runtime's: a private containerd at debug level runs
// the shim with -debug, and its log has both times.
func (b *bench) share() error {
	d, err := startContainerd(b.d.shimDir, true)
	if err != nil {
		return err
	}
	defer d.stop()
	for i := 0; i < b.n; i++ {
		if _, err := d.timed(nil, b.devnull, "run", "--rm", "--null-io", "--runtime", ours, image, fmt.Sprintf("share-%d", i), "true"); err != nil {
			return err
		}
	}
	if _, err := d.ctr(nil, "run", "-d", "--runtime", ours, image, "share-exec", "sleep", "100000"); err != nil {
		return err
	}
	execs := 2 * b.n
	for i := 0; i < execs; i++ {
		if _, err := d.timed(nil, b.devnull, "tasks", "exec", "--exec-id", fmt.Sprintf("e%d", i), "share-exec", "true"); err != nil {
			return err
		}
	}
	times, err := readShimTimes(filepath.Join(d.dir, "containerd.log"))
	if err != nil {
		return err
	}
	var runOwn, runRuntime []float64
	var execOwn, execRuntime float64
	for _, t := range times {
		if t.execSeen {
			execOwn = ms(t.requests-t.runtime) / float64(execs)
			execRuntime = ms(t.runtime) / float64(execs)
			continue
		}
		runOwn = append(runOwn, ms(t.requests-t.runtime))
		runRuntime = append(runRuntime, ms(t.runtime))
	}
	if len(runOwn) == 0 || execRuntime == 0 {
		return fmt.Errorf("no request times in %s: is the shim logging at debug level?", d.dir)
	}
	own, rt := median(runOwn), median(runRuntime)
	b.add("shim's own time in a container's requests", "ms", "", fmt.Sprintf(
		"ctr run --rm, requests but Wait minus runc's time in them (runc: %.2f ms; own/runc %.2f)", rt, own/rt), own, 0, 0)
	b.add("shim's own time in an exec's requests", "ms", "", fmt.Sprintf(
		"ctr task exec, the same (runc after Start: %.2f ms; own/runc %.2f)", execRuntime, execOwn/execRuntime), execOwn, 0, 0)
	return nil
}

// readShimTimes sums, per shim pid, the request and runtime times the shim
// logged. For a shim that served an Exec, only what came from the first
// Exec on counts.
func readShimTimes(path string) (map[string]*shimTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	times := map[string]*shimTimes{}
	get := func(pid string) *shimTimes {
		t, ok := times[pid]
		if !ok {
			t = &shimTimes{}
			times[pid] = t
		}
		return t
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := requestLine.FindStringSubmatch(line); m != nil {
			t := get(m[1])
			took, err := time.ParseDuration(m[3])
			if err != nil || strings.HasSuffix(m[2], "/Wait") {
				continue
			}
			if strings.HasSuffix(m[2], "/Exec") && !t.execSeen {
				*t = shimTimes{execSeen: true}
			}
			t.requests += took
		} else if m := runtimeLine.FindStringSubmatch(line); m != nil {
			t := get(m[1])
			if took, err := time.ParseDuration(m[3]); err == nil {
				t.runtime += took
			}
		}
	}
	return times, sc.Err()
}
