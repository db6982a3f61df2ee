package cgroup

import (
	"fmt"
	"math"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protowire"
)

// metricsV2 writes an io.containerd.cgroups.v2.Metrics of the unified
// cgroup's files. A controller not enabled for the cgroup has no files, and
// is left out. "max" reads as math.MaxUint64.
func (c *Cgroup) metricsV2(w *pbWriter, s *scratch) error {
	if err := c.pidsV2(w, s); err != nil {
		return err
	}
	if err := c.cpuV2(w, s); err != nil {
		return err
	}
	if err := c.memoryV2(w, s); err != nil {
		return err
	}
	if err := c.ioV2(w, s); err != nil {
		return err
	}
	return c.hugetlbV2(w, s)
}

func (c *Cgroup) pidsV2(w *pbWriter, s *scratch) error {
	current, missing, err := s.readUint(0, c.unified, "pids.current")
	if missing || err != nil {
		return err
	}
	limit, _, err := s.readUint(math.MaxUint64, c.unified, "pids.max")
	if err != nil {
		return err
	}
	start := w.begin()
	w.uint64(v2PidsCurrent, current)
	w.uint64(v2PidsLimit, limit)
	w.end(v2MetricsPids, start)
	return nil
}

func (c *Cgroup) cpuV2(w *pbWriter, s *scratch) error {
	data, err := s.read(c.unified, "cpu.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	w.keyed(v2MetricsCPU, data, v2CPUStatFields, nil) // usage_usec, user_usec, system_usec, nr_periods...
	return nil
}

func (c *Cgroup) memoryV2(w *pbWriter, s *scratch) error {
	data, err := s.read(c.unified, "memory.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	mem := w.begin()
	// Since Linux 5.9 the workingset counters are split into anon and file:
	// their sums stand for the counters a kernel without them lacks.
	var refault, activate [3]uint64 // anon, file, whether the unsplit one was there
	eachKV(data, func(key []byte, v uint64) {
		switch string(key) {
		case "workingset_refault_anon":
			refault[0] = v
		case "workingset_refault_file":
			refault[1] = v
		case "workingset_activate_anon":
			activate[0] = v
		case "workingset_activate_file":
			activate[1] = v
		case "workingset_refault":
			refault[2] = 1
		case "workingset_activate":
			activate[2] = 1
		}
		if n := v2MemoryStatFields.number(key); n != 0 {
			w.uint64(n, v)
		}
	})
	if refault[2] == 0 {
		w.uint64(v2MemoryWorkingsetRefault, refault[0]+refault[1])
	}
	if activate[2] == 0 {
		w.uint64(v2MemoryWorkingsetActivate, activate[0]+activate[1])
	}
	for _, f := range [...]struct {
		num  protowire.Number
		name string
	}{
		{v2MemoryUsage, "memory.current"},
		{v2MemoryUsageLimit, "memory.max"},
		{v2MemoryMaxUsage, "memory.peak"},
		{v2MemorySwapUsage, "memory.swap.current"},
		{v2MemorySwapLimit, "memory.swap.max"},
		{v2MemorySwapMaxUsage, "memory.swap.peak"},
	} {
		v, _, err := s.readUint(math.MaxUint64, c.unified, f.name)
		if err != nil {
			return err
		}
		w.uint64(f.num, v)
	}
	w.end(v2MetricsMemory, mem)

	if data, err := s.read(c.unified, "memory.events"); err == nil {
		w.keyed(v2MetricsMemoryEvents, data, v2MemoryEventsFields, nil) // low, high, max, oom, oom_kill, oom_group_kill
	} else if !cgroupFileMissing(err) {
		return err
	}
	return nil
}

func (c *Cgroup) ioV2(w *pbWriter, s *scratch) error {
	data, err := s.read(c.unified, "io.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	start := w.begin()
	if err := ioEntries(w, v2IOStatUsage, data); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(c.unified, "io.stat"), err)
	}
	w.end(v2MetricsIo, start)
	return nil
}

// ioEntries writes the lines of io.stat ("major:minor key=value...", one per
// device: rbytes, wbytes, rios, wios; other keys are ignored) as IOEntry
// fields num.
func ioEntries(w *pbWriter, num protowire.Number, data []byte) error {
	for line, rest := nextLine(data); len(line) > 0 || len(rest) > 0; line, rest = nextLine(rest) {
		dev, more := nextField(line)
		if len(dev) == 0 {
			continue
		}
		major, minor, err := deviceNumbers(dev)
		if err != nil {
			return err
		}
		var values [4]uint64 // rbytes, wbytes, rios, wios
		for f, next := nextField(more); len(f) > 0; f, next = nextField(next) {
			i := 0
			for i < len(f) && f[i] != '=' {
				i++
			}
			if i == len(f) {
				return fmt.Errorf("line %q: field %q: want key=value", trimSpace(line), f)
			}
			var k int
			switch string(f[:i]) {
			case "rbytes":
				k = 0
			case "wbytes":
				k = 1
			case "rios":
				k = 2
			case "wios":
				k = 3
			default:
				continue
			}
			v, ok := parseUint(f[i+1:])
			if !ok {
				return fmt.Errorf("line %q: %w", trimSpace(line), errNotUint(f[i+1:]))
			}
			values[k] = v
		}
		start := w.begin()
		w.uint64(v2IOEntryMajor, major)
		w.uint64(v2IOEntryMinor, minor)
		w.uint64(v2IOEntryRbytes, values[0])
		w.uint64(v2IOEntryWbytes, values[1])
		w.uint64(v2IOEntryRios, values[2])
		w.uint64(v2IOEntryWios, values[3])
		w.end(num, start)
	}
	return nil
}

func (c *Cgroup) hugetlbV2(w *pbWriter, s *scratch) error {
	for _, size := range hugePageSizes() {
		current, missing, err := s.readUint(0, c.unified, "hugetlb.", size, ".current")
		if err != nil {
			return err
		}
		if missing {
			continue
		}
		max, _, err := s.readUint(math.MaxUint64, c.unified, "hugetlb.", size, ".max")
		if err != nil {
			return err
		}
		var failcnt uint64
		if data, err := s.read(c.unified, "hugetlb.", size, ".events"); err == nil {
			failcnt, _ = kv(data, "max")
		} else if !cgroupFileMissing(err) {
			return err
		}
		start := w.begin()
		w.uint64(v2HugetlbCurrent, current)
		w.uint64(v2HugetlbMax, max)
		w.string(v2HugetlbPagesize, size)
		w.uint64(v2HugetlbFailcnt, failcnt)
		w.end(v2MetricsHugetlb, start)
	}
	return nil
}
