package cgroup

import (
	"bytes"
	"fmt"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protowire"
)

// userHZ is the unit of cpuacct.stat: USER_HZ, 100 on every Linux ABI.
const userHZ = 100

// metricsV1 writes an io.containerd.cgroups.v1.Metrics of every v1
// controller the cgroup has.
func (c *Cgroup) metricsV1(w *pbWriter, s *scratch) error {
	if err := c.pidsV1(w, s); err != nil {
		return err
	}
	if err := c.cpuV1(w, s); err != nil {
		return err
	}
	if err := c.memoryV1(w, s); err != nil {
		return err
	}
	if err := c.blkioV1(w, s); err != nil {
		return err
	}
	return c.hugetlbV1(w, s)
}

// ctrlDir returns the cgroup's directory for a v1 controller, "" if it has none.
func (c *Cgroup) ctrlDir(ctrl string) string {
	return c.dirs[ctrl]
}

func (c *Cgroup) pidsV1(w *pbWriter, s *scratch) error {
	dir := c.ctrlDir("pids")
	if dir == "" {
		return nil
	}
	current, missing, err := s.readUint(0, dir, "pids.current")
	if missing || err != nil {
		return err
	}
	limit, _, err := s.readUint(0, dir, "pids.max") // "max" is no limit: 0
	if err != nil {
		return err
	}
	start := w.begin()
	w.uint64(v1PidsCurrent, current)
	w.uint64(v1PidsLimit, limit)
	w.end(v1MetricsPids, start)
	return nil
}

func (c *Cgroup) cpuV1(w *pbWriter, s *scratch) error {
	cpu := w.begin()
	if dir := c.ctrlDir("cpuacct"); dir != "" {
		total, missing, err := s.readUint(0, dir, "cpuacct.usage")
		if err != nil {
			return err
		}
		if !missing {
			usage := w.begin()
			w.uint64(v1CPUUsageTotal, total)
			var user, system uint64
			if data, err := s.read(dir, "cpuacct.stat"); err == nil {
				user, _ = kv(data, "user")
				system, _ = kv(data, "system")
			} else if !cgroupFileMissing(err) {
				return err
			}
			w.uint64(v1CPUUsageKernel, system*(1e9/userHZ))
			w.uint64(v1CPUUsageUser, user*(1e9/userHZ))
			if data, err := s.read(dir, "cpuacct.usage_percpu"); err == nil {
				if err := w.packed(v1CPUUsagePerCPU, data); err != nil {
					return fmt.Errorf("parse %s: %w", filepath.Join(dir, "cpuacct.usage_percpu"), err)
				}
			} else if !cgroupFileMissing(err) {
				return err
			}
			w.end(v1CPUUsage, usage)
		}
	}
	if dir := c.ctrlDir("cpu"); dir != "" {
		data, err := s.read(dir, "cpu.stat")
		switch {
		case cgroupFileMissing(err):
		case err != nil:
			return err
		default:
			periods, _ := kv(data, "nr_periods")
			throttled, _ := kv(data, "nr_throttled")
			throttledTime, _ := kv(data, "throttled_time")
			th := w.begin()
			w.uint64(v1ThrottlePeriods, periods)
			w.uint64(v1ThrottleThrottledPeriods, throttled)
			w.uint64(v1ThrottleThrottledTime, throttledTime)
			w.end(v1CPUThrottling, th)
		}
	}
	if w.begin() > cpu { // usage or throttling
		w.end(v1MetricsCPU, cpu)
	}
	return nil
}

func (c *Cgroup) memoryV1(w *pbWriter, s *scratch) error {
	dir := c.ctrlDir("memory")
	if dir == "" {
		return nil
	}
	data, err := s.read(dir, "memory.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	mem := w.begin()
	eachKV(data, func(key []byte, v uint64) {
		if n := v1MemoryStatField(key); n != 0 {
			w.uint64(n, v)
		}
	})
	for _, e := range []struct {
		num    protowire.Number
		prefix string
	}{
		{v1MemoryUsage, "memory."},
		{v1MemorySwap, "memory.memsw."},
		{v1MemoryKernel, "memory.kmem."},
		{v1MemoryKernelTCP, "memory.kmem.tcp."},
	} {
		if err := memoryEntryV1(w, s, e.num, dir, e.prefix); err != nil {
			return err
		}
	}
	w.end(v1MetricsMemory, mem)

	if data, err := s.read(dir, "memory.oom_control"); err == nil {
		w.keyed(v1MetricsMemoryOomControl, data, v1MemoryOomControlFields, nil)
	} else if !cgroupFileMissing(err) {
		return err
	}
	return nil
}

// v1MemoryStatField is the MemoryStat field of a v1 memory.stat key, whose
// name is the key's but where v1MemoryStatRenames says otherwise
// ("pgpgin" -> "pg_pg_in", "total_pgfault" -> "total_pg_fault").
func v1MemoryStatField(key []byte) protowire.Number {
	for _, r := range v1MemoryStatRenames {
		if string(key) == r[0] {
			return v1MemoryStatFields.numberOf(r[1])
		}
	}
	return v1MemoryStatFields.number(key)
}

// v1MemoryStatRenames are the memory.stat keys whose fields are named
// otherwise.
var v1MemoryStatRenames = [...][2]string{
	{"pgpgin", "pg_pg_in"}, {"pgpgout", "pg_pg_out"}, {"pgfault", "pg_fault"}, {"pgmajfault", "pg_maj_fault"},
	{"hierarchical_memsw_limit", "hierarchical_swap_limit"},
	{"total_pgpgin", "total_pg_pg_in"}, {"total_pgpgout", "total_pg_pg_out"}, {"total_pgfault", "total_pg_fault"},
	{"total_pgmajfault", "total_pg_maj_fault"}, {"total_hierarchical_memsw_limit", "total_hierarchical_swap_limit"},
}

// memoryEntryV1 writes the MemoryEntry field num from
// <prefix>{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes};
// nothing if the kernel has no usage file for it (no swap accounting, no
// kmem).
func memoryEntryV1(w *pbWriter, s *scratch, num protowire.Number, dir, prefix string) error {
	var values [4]uint64 // usage, max, failcnt, limit
	for i, name := range [4]string{"usage_in_bytes", "max_usage_in_bytes", "failcnt", "limit_in_bytes"} {
		v, missing, err := s.readUint(0, dir, prefix, name)
		if err != nil {
			return err
		}
		if missing && i == 0 {
			return nil
		}
		values[i] = v
	}
	start := w.begin()
	w.uint64(v1MemoryEntryLimit, values[3])
	w.uint64(v1MemoryEntryUsage, values[0])
	w.uint64(v1MemoryEntryMax, values[1])
	w.uint64(v1MemoryEntryFailcnt, values[2])
	w.end(num, start)
	return nil
}

func (c *Cgroup) blkioV1(w *pbWriter, s *scratch) error {
	dir := c.ctrlDir("blkio")
	if dir == "" {
		return nil
	}
	found := false
	stat := w.begin()
	for list := 1; list < len(v1BlkioFiles); list++ {
		for _, name := range v1BlkioFiles[list] {
			data, err := s.read(dir, name)
			if cgroupFileMissing(err) {
				continue
			}
			if err != nil {
				return err
			}
			found = true
			n, err := blkioEntries(w, protowire.Number(list), data, s.deviceName)
			if err != nil {
				return fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
			}
			if n > 0 {
				break
			}
		}
	}
	if found {
		w.end(v1MetricsBlkio, stat)
	}
	return nil
}

// blkioEntries writes the entries of a blkio statistics file ("major:minor
// op value" lines, or "major:minor value" for files without operations, and
// a final "Total value" line, which is skipped) as BlkIOEntry fields num,
// named by name (major, minor); it returns how many.
func blkioEntries(w *pbWriter, num protowire.Number, data []byte, name func(major, minor uint64) []byte) (int, error) {
	n := 0
	for line, rest := nextLine(data); len(line) > 0 || len(rest) > 0; line, rest = nextLine(rest) {
		var fields [4][]byte
		k := 0
		for f, more := nextField(line); len(f) > 0; f, more = nextField(more) {
			if k < len(fields) {
				fields[k] = f
			}
			k++
		}
		if k == 0 || (k == 2 && string(fields[0]) == "Total") {
			continue
		}
		if k != 2 && k != 3 {
			return 0, fmt.Errorf("line %q: want major:minor [op] value", trimSpace(line))
		}
		major, minor, err := deviceNumbers(fields[0])
		if err != nil {
			return 0, err
		}
		value, ok := parseUint(fields[k-1])
		if !ok {
			return 0, fmt.Errorf("line %q: %w", trimSpace(line), errNotUint(fields[k-1]))
		}
		start := w.begin()
		if k == 3 {
			w.bytes(v1BlkioEntryOp, fields[1])
		}
		w.bytes(v1BlkioEntryDevice, name(major, minor))
		w.uint64(v1BlkioEntryMajor, major)
		w.uint64(v1BlkioEntryMinor, minor)
		w.uint64(v1BlkioEntryValue, value)
		w.end(num, start)
		n++
	}
	return n, nil
}

// deviceName names a block device by its numbers ("/dev/sda"), from the
// /sys/dev/block link; empty if it has none. Valid until the next call.
func (s *scratch) deviceName(major, minor uint64) []byte {
	if s.devOK && s.dev == [2]uint64{major, minor} {
		return s.devName
	}
	var p [64]byte
	path := append(p[:0], "/sys/dev/block/"...)
	path = appendUint(path, major)
	path = append(path, ':')
	path = appendUint(path, minor)
	s.devName = s.devName[:0]
	if target := s.readlink(path); len(target) > 0 {
		s.devName = append(s.devName, "/dev/"...)
		s.devName = append(s.devName, target[bytes.LastIndexByte(target, '/')+1:]...)
	}
	s.dev, s.devOK = [2]uint64{major, minor}, true
	return s.devName
}

func appendUint(b []byte, v uint64) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

func (c *Cgroup) hugetlbV1(w *pbWriter, s *scratch) error {
	dir := c.ctrlDir("hugetlb")
	if dir == "" {
		return nil
	}
	for _, size := range hugePageSizes() {
		usage, missing, err := s.readUint(0, dir, "hugetlb.", size, ".usage_in_bytes")
		if err != nil {
			return err
		}
		if missing {
			continue
		}
		max, _, err := s.readUint(0, dir, "hugetlb.", size, ".max_usage_in_bytes")
		if err != nil {
			return err
		}
		failcnt, _, err := s.readUint(0, dir, "hugetlb.", size, ".failcnt")
		if err != nil {
			return err
		}
		start := w.begin()
		w.uint64(v1HugetlbUsage, usage)
		w.uint64(v1HugetlbMax, max)
		w.uint64(v1HugetlbFailcnt, failcnt)
		w.string(v1HugetlbPagesize, size)
		w.end(v1MetricsHugetlb, start)
	}
	return nil
}
