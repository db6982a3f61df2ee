package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// shimBinary is the executable name of runtime's shim.
func shimBinary(runtime string) string {
	if runtime == ours {
		return "containerd-shim-pod-v2"
	}
	return "containerd-shim-runc-v2"
}

// shimPIDs lists the serving shims of runtime started by the daemon at
// address (its socket is on their command line).
func shimPIDs(runtime, address string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		argv := strings.Split(string(data), "\x00")
		if filepath.Base(argv[0]) != shimBinary(runtime) || !strings.Contains(string(data), address+"\x00") {
			continue
		}
		// Serving shims only: `start` and `delete` name their action last.
		if last := argv[len(argv)-2]; last == "start" || last == "delete" {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimMemory sums PSS and RSS (MB) of the shims of runtime serving this daemon.
func shimMemory(runtime, address string) (pss, rss float64) {
	for _, pid := range shimPIDs(runtime, address) {
		p, r, err := memoryOf(pid)
		if err == nil {
			pss, rss = pss+p, rss+r
		}
	}
	return pss, rss
}

// memoryOf reads a process's PSS and RSS (MB) from smaps_rollup.
func memoryOf(pid int) (pss, rss float64, err error) {
	m, err := rollup(pid)
	return m["Pss:"], m["Rss:"], err
}

// rollup reads a process's smaps_rollup: field ("Pss:") -> MB.
func rollup(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[2] == "kB" {
			kb, _ := strconv.ParseFloat(fields[1], 64)
			m[fields[0]] = kb / 1024
		}
	}
	return m, sc.Err()
}

// figures is what a leak soak follows of one shim process.
type figures struct {
	fds, threads, children, goroutines int
	pss, pssAnon, rss                  float64 // MB
}

// processFigures reads a process's open fds, threads, children and memory
// (goroutines are not visible from outside: the caller fills them in).
func processFigures(pid int) (figures, error) {
	var f figures
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return f, fmt.Errorf("fds of %d: %w", pid, err)
	}
	f.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return f, fmt.Errorf("status of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			f.threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	f.children = len(childrenOf(pid))
	m, err := rollup(pid)
	if err != nil {
		return f, fmt.Errorf("memory of %d: %w", pid, err)
	}
	f.pss, f.pssAnon, f.rss = m["Pss:"], m["Pss_Anon:"], m["Rss:"]
	return f, nil
}

// childrenOf lists the pids whose parent is pid (every thread's children).
func childrenOf(pid int) []int {
	var kids []int
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if k, err := strconv.Atoi(s); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}
