//go:build cgroup2vm

package cgroup2

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the kernel's cgroup2 hierarchy is mounted in the VM.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupFSType says what is mounted at cgroupRoot: "cgroup2fs" on a cgroup v2 only machine.
func cgroupFSType() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return "cgroup2fs", nil
	case unix.TMPFS_MAGIC:
		return "tmpfs (cgroup v1 or hybrid)", nil
	}
	return fmt.Sprintf("0x%x", st.Type), nil
}

// cgroupOf is the directory of pid's cgroup, from /proc/<pid>/cgroup ("0::/path" on cgroup v2).
func cgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Join(cgroupRoot, p), nil
		}
	}
	return "", fmt.Errorf("cgroup of pid %d: no cgroup v2 line in %q", pid, b)
}

// cgroupFile reads a file of a cgroup, trimmed.
func cgroupFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// cgroupKey is the value of key in a flat keyed cgroup file (memory.events, cgroup.events...).
func cgroupKey(dir, name, key string) (uint64, error) {
	s, err := cgroupFile(dir, name)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in %s", key, filepath.Join(dir, name))
}

// cgroupProcs lists the pids in a cgroup.
func cgroupProcs(dir string) ([]int, error) {
	s, err := cgroupFile(dir, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup.procs of %s: %w", dir, err)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// cmdline is the name of pid's command (its comm).
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// parseMax reads a cgroup limit as the metrics carry it: "max" is math.MaxUint64.
func parseMax(s string) uint64 {
	if s == "max" {
		return math.MaxUint64
	}
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
