package cgroup

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// metricsV2 reads the unified cgroup's files. A controller not enabled for
// the cgroup has no files, and is left out. "max" reads as math.MaxUint64.
func (c *Cgroup) metricsV2() (*v2stats.Metrics, error) {
	m := &v2stats.Metrics{}
	for _, read := range []func(*v2stats.Metrics) error{
		c.pidsV2, c.cpuV2, c.memoryV2, c.ioV2, c.hugetlbV2,
	} {
		if err := read(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (c *Cgroup) pidsV2(m *v2stats.Metrics) error {
	current, err := readCgroupUint(c.unified, "pids.current", 0)
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	limit, err := readCgroupUint(c.unified, "pids.max", math.MaxUint64)
	if err != nil && !cgroupFileMissing(err) {
		return err
	}
	m.Pids = &v2stats.PidsStat{Current: current, Limit: limit}
	return nil
}

func (c *Cgroup) cpuV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "cpu.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cpu := &v2stats.CPUStat{}
	setStatFields(cpu, s, nil) // usage_usec, user_usec, system_usec, nr_periods, nr_throttled, throttled_usec...
	m.CPU = cpu
	return nil
}

func (c *Cgroup) memoryV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "memory.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	mem := &v2stats.MemoryStat{}
	setStatFields(mem, s, nil)
	// Since Linux 5.9 the workingset counters are split into anon and file.
	if _, ok := statValue(s, "workingset_refault"); !ok {
		anon, _ := statValue(s, "workingset_refault_anon")
		file, _ := statValue(s, "workingset_refault_file")
		mem.WorkingsetRefault = anon + file
	}
	if _, ok := statValue(s, "workingset_activate"); !ok {
		anon, _ := statValue(s, "workingset_activate_anon")
		file, _ := statValue(s, "workingset_activate_file")
		mem.WorkingsetActivate = anon + file
	}
	for _, f := range []struct {
		name  string
		value *uint64
	}{
		{"memory.current", &mem.Usage},
		{"memory.max", &mem.UsageLimit},
		{"memory.peak", &mem.MaxUsage},
		{"memory.swap.current", &mem.SwapUsage},
		{"memory.swap.max", &mem.SwapLimit},
		{"memory.swap.peak", &mem.SwapMaxUsage},
	} {
		n, err := readCgroupUint(c.unified, f.name, math.MaxUint64)
		if err != nil && !cgroupFileMissing(err) {
			return err
		}
		*f.value = n
	}
	m.Memory = mem

	if s, err := readCgroupFile(c.unified, "memory.events"); err == nil {
		ev := &v2stats.MemoryEvents{}
		setStatFields(ev, s, nil) // low, high, max, oom, oom_kill, oom_group_kill
		m.MemoryEvents = ev
	} else if !cgroupFileMissing(err) {
		return err
	}
	return nil
}

func (c *Cgroup) ioV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "io.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := parseIOStat(s)
	if err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(c.unified, "io.stat"), err)
	}
	m.Io = &v2stats.IOStat{Usage: entries}
	return nil
}

// parseIOStat parses io.stat: one "major:minor key=value..." line per device
// (rbytes, wbytes, rios, wios; other keys are ignored).
func parseIOStat(data string) ([]*v2stats.IOEntry, error) {
	var entries []*v2stats.IOEntry
	for line := range strings.Lines(data) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		major, minor, err := parseDeviceNumbers(fields[0])
		if err != nil {
			return nil, err
		}
		e := &v2stats.IOEntry{Major: major, Minor: minor}
		for _, f := range fields[1:] {
			key, value, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("line %q: field %q: want key=value", strings.TrimSpace(line), f)
			}
			var dst *uint64
			switch key {
			case "rbytes":
				dst = &e.Rbytes
			case "wbytes":
				dst = &e.Wbytes
			case "rios":
				dst = &e.Rios
			case "wios":
				dst = &e.Wios
			default:
				continue
			}
			if *dst, err = strconv.ParseUint(value, 10, 64); err != nil {
				return nil, fmt.Errorf("line %q: %w", strings.TrimSpace(line), err)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func (c *Cgroup) hugetlbV2(m *v2stats.Metrics) error {
	for _, size := range hugePageSizes() {
		prefix := "hugetlb." + size + "."
		current, err := readCgroupUint(c.unified, prefix+"current", 0)
		if cgroupFileMissing(err) {
			continue
		}
		if err != nil {
			return err
		}
		h := &v2stats.HugeTlbStat{Pagesize: size, Current: current}
		if h.Max, err = readCgroupUint(c.unified, prefix+"max", math.MaxUint64); err != nil && !cgroupFileMissing(err) {
			return err
		}
		if s, err := readCgroupFile(c.unified, prefix+"events"); err == nil {
			h.Failcnt, _ = statValue(s, "max")
		} else if !cgroupFileMissing(err) {
			return err
		}
		m.Hugetlb = append(m.Hugetlb, h)
	}
	return nil
}
