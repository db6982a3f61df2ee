package cgroup

// The metrics code as it was before the shim encoded metrics itself (see
// metrics.go): typed messages filled through protobuf reflection. Kept as
// the oracle that the encoder's output must decode to the same messages as.

import (
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// oracleMetrics is what Metrics returned before: the typed message.
func (c *Cgroup) oracleMetrics() (proto.Message, error) {
	if c.version == 2 {
		if !cgroupPathExists(c.unified) {
			return nil, fmt.Errorf("cgroup %s: %w", c.unified, fs.ErrNotExist)
		}
		return c.oracleMetricsV2()
	}
	found := false
	for _, dir := range c.dirs {
		found = found || cgroupPathExists(dir)
	}
	if !found {
		return nil, fmt.Errorf("cgroup of pid %d: %w", c.pid, fs.ErrNotExist)
	}
	return c.oracleMetricsV1()
}

// oracleUserHZ is the unit of cpuacct.stat: USER_HZ, 100 on every Linux ABI.
const oracleUserHZ = 100

// oracleMetricsV1 reads every v1 controller the cgroup has.
func (c *Cgroup) oracleMetricsV1() (*v1stats.Metrics, error) {
	m := &v1stats.Metrics{}
	for _, read := range []func(*v1stats.Metrics) error{
		c.oraclePidsV1, c.oracleCPUV1, c.oracleMemoryV1, c.oracleBlkioV1, c.oracleHugetlbV1,
	} {
		if err := read(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// dir returns the cgroup's directory for a v1 controller, "" if it has none.
func (c *Cgroup) oracleCtrlDir(ctrl string) string {
	return c.dirs[ctrl]
}

func (c *Cgroup) oraclePidsV1(m *v1stats.Metrics) error {
	dir := c.oracleCtrlDir("pids")
	if dir == "" {
		return nil
	}
	current, err := readCgroupUint(dir, "pids.current", 0)
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	limit, err := readCgroupUint(dir, "pids.max", 0) // "max" is no limit: 0
	if err != nil && !cgroupFileMissing(err) {
		return err
	}
	m.Pids = &v1stats.PidsStat{Current: current, Limit: limit}
	return nil
}

func (c *Cgroup) oracleCPUV1(m *v1stats.Metrics) error {
	cpu := &v1stats.CPUStat{}
	if dir := c.oracleCtrlDir("cpuacct"); dir != "" {
		usage := &v1stats.CPUUsage{}
		total, err := readCgroupUint(dir, "cpuacct.usage", 0)
		switch {
		case cgroupFileMissing(err):
			usage = nil
		case err != nil:
			return err
		default:
			usage.Total = total
			if s, err := readCgroupFile(dir, "cpuacct.usage_percpu"); err == nil {
				if usage.PerCPU, err = oracleParseUintList(s); err != nil {
					return fmt.Errorf("parse %s: %w", filepath.Join(dir, "cpuacct.usage_percpu"), err)
				}
			} else if !cgroupFileMissing(err) {
				return err
			}
			if s, err := readCgroupFile(dir, "cpuacct.stat"); err == nil {
				user, _ := statValue(s, "user")
				system, _ := statValue(s, "system")
				usage.User = user * (1e9 / oracleUserHZ)
				usage.Kernel = system * (1e9 / oracleUserHZ)
			} else if !cgroupFileMissing(err) {
				return err
			}
		}
		cpu.Usage = usage
	}
	if dir := c.oracleCtrlDir("cpu"); dir != "" {
		s, err := readCgroupFile(dir, "cpu.stat")
		switch {
		case cgroupFileMissing(err):
		case err != nil:
			return err
		default:
			t := &v1stats.Throttle{}
			t.Periods, _ = statValue(s, "nr_periods")
			t.ThrottledPeriods, _ = statValue(s, "nr_throttled")
			t.ThrottledTime, _ = statValue(s, "throttled_time")
			cpu.Throttling = t
		}
	}
	if cpu.Usage != nil || cpu.Throttling != nil {
		m.CPU = cpu
	}
	return nil
}

func (c *Cgroup) oracleMemoryV1(m *v1stats.Metrics) error {
	dir := c.oracleCtrlDir("memory")
	if dir == "" {
		return nil
	}
	s, err := readCgroupFile(dir, "memory.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	mem := &v1stats.MemoryStat{}
	oracleSetStatFields(mem, s, oracleV1MemoryStatName)
	for _, e := range []struct {
		prefix string
		entry  **v1stats.MemoryEntry
	}{
		{"memory.", &mem.Usage},
		{"memory.memsw.", &mem.Swap},
		{"memory.kmem.", &mem.Kernel},
		{"memory.kmem.tcp.", &mem.KernelTCP},
	} {
		if *e.entry, err = oracleReadMemoryEntry(dir, e.prefix); err != nil {
			return err
		}
	}
	m.Memory = mem

	if s, err := readCgroupFile(dir, "memory.oom_control"); err == nil {
		oc := &v1stats.MemoryOomControl{}
		oracleSetStatFields(oc, s, nil)
		m.MemoryOomControl = oc
	} else if !cgroupFileMissing(err) {
		return err
	}
	return nil
}

// oracleV1MemoryStatName maps a v1 memory.stat key to its MemoryStat field name
// where they differ ("pgpgin" -> "pg_pg_in", "total_pgfault" -> "total_pg_fault").
func oracleV1MemoryStatName(key string) string {
	base, total := strings.CutPrefix(key, "total_")
	switch base {
	case "pgpgin":
		base = "pg_pg_in"
	case "pgpgout":
		base = "pg_pg_out"
	case "pgfault":
		base = "pg_fault"
	case "pgmajfault":
		base = "pg_maj_fault"
	case "hierarchical_memsw_limit":
		base = "hierarchical_swap_limit"
	}
	if total {
		return "total_" + base
	}
	return base
}

// oracleReadMemoryEntry reads <prefix>{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes};
// nil if the kernel has no usage file for it (no swap accounting, no kmem).
func oracleReadMemoryEntry(dir, prefix string) (*v1stats.MemoryEntry, error) {
	e := &v1stats.MemoryEntry{}
	for _, f := range []struct {
		name  string
		value *uint64
	}{
		{"usage_in_bytes", &e.Usage},
		{"max_usage_in_bytes", &e.Max},
		{"failcnt", &e.Failcnt},
		{"limit_in_bytes", &e.Limit},
	} {
		n, err := readCgroupUint(dir, prefix+f.name, 0)
		if cgroupFileMissing(err) {
			if f.value == &e.Usage {
				return nil, nil
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		*f.value = n
	}
	return e, nil
}

func (c *Cgroup) oracleBlkioV1(m *v1stats.Metrics) error {
	dir := c.oracleCtrlDir("blkio")
	if dir == "" {
		return nil
	}
	stat := &v1stats.BlkIOStat{}
	// Each list comes from the first of its files that has entries. The CFQ
	// files (kernels before 5.0) come first; newer kernels only have the
	// throttle policy's files, which count all the I/O of the cgroup.
	found := false
	names := make(map[[2]uint64]string) // device names, looked up once per call
	for _, l := range []struct {
		list  *[]*v1stats.BlkIOEntry
		files []string
	}{
		{&stat.IoServiceBytesRecursive, []string{"blkio.io_service_bytes_recursive",
			"blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"}},
		{&stat.IoServicedRecursive, []string{"blkio.io_serviced_recursive",
			"blkio.throttle.io_serviced_recursive", "blkio.throttle.io_serviced"}},
		{&stat.IoQueuedRecursive, []string{"blkio.io_queued_recursive"}},
		{&stat.IoServiceTimeRecursive, []string{"blkio.io_service_time_recursive"}},
		{&stat.IoWaitTimeRecursive, []string{"blkio.io_wait_time_recursive"}},
		{&stat.IoMergedRecursive, []string{"blkio.io_merged_recursive"}},
		{&stat.IoTimeRecursive, []string{"blkio.time_recursive"}},
		{&stat.SectorsRecursive, []string{"blkio.sectors_recursive"}},
	} {
		for _, name := range l.files {
			s, err := readCgroupFile(dir, name)
			if cgroupFileMissing(err) {
				continue
			}
			if err != nil {
				return err
			}
			found = true
			entries, err := oracleParseBlkio(s)
			if err != nil {
				return fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
			}
			if len(entries) > 0 {
				for _, e := range entries {
					key := [2]uint64{e.Major, e.Minor}
					name, ok := names[key]
					if !ok {
						name = oracleBlockDeviceName(e.Major, e.Minor)
						names[key] = name
					}
					e.Device = name
				}
				*l.list = entries
				break
			}
		}
	}
	if found {
		m.Blkio = stat
	}
	return nil
}

// parseBlkio parses a blkio statistics file: "major:minor op value" lines
// (or "major:minor value" for files without operations), and a final
// "Total value" line, which is skipped.
func oracleParseBlkio(data string) ([]*v1stats.BlkIOEntry, error) {
	var entries []*v1stats.BlkIOEntry
	for line := range strings.Lines(data) {
		fields := strings.Fields(line)
		if len(fields) == 0 || (len(fields) == 2 && fields[0] == "Total") {
			continue
		}
		if len(fields) != 2 && len(fields) != 3 {
			return nil, fmt.Errorf("line %q: want major:minor [op] value", strings.TrimSpace(line))
		}
		major, minor, err := oracleParseDeviceNumbers(fields[0])
		if err != nil {
			return nil, err
		}
		value, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", strings.TrimSpace(line), err)
		}
		e := &v1stats.BlkIOEntry{Major: major, Minor: minor, Value: value}
		if len(fields) == 3 {
			e.Op = fields[1]
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// parseDevice parses "major:minor".
func oracleParseDeviceNumbers(s string) (major, minor uint64, err error) {
	ma, mi, ok := strings.Cut(s, ":")
	if ok {
		if major, err = strconv.ParseUint(ma, 10, 64); err == nil {
			minor, err = strconv.ParseUint(mi, 10, 64)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("device %q: want major:minor", s)
	}
	return major, minor, nil
}

// blockDeviceName names a block device by its numbers ("/dev/sda"), from the
// /sys/dev/block link; "" if it has none.
func oracleBlockDeviceName(major, minor uint64) string {
	target, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return ""
	}
	return "/dev/" + filepath.Base(target)
}

func (c *Cgroup) oracleHugetlbV1(m *v1stats.Metrics) error {
	dir := c.oracleCtrlDir("hugetlb")
	if dir == "" {
		return nil
	}
	for _, size := range hugePageSizes() {
		prefix := "hugetlb." + size + "."
		usage, err := readCgroupUint(dir, prefix+"usage_in_bytes", 0)
		if cgroupFileMissing(err) {
			continue
		}
		if err != nil {
			return err
		}
		h := &v1stats.HugetlbStat{Pagesize: size, Usage: usage}
		if h.Max, err = readCgroupUint(dir, prefix+"max_usage_in_bytes", 0); err != nil && !cgroupFileMissing(err) {
			return err
		}
		if h.Failcnt, err = readCgroupUint(dir, prefix+"failcnt", 0); err != nil && !cgroupFileMissing(err) {
			return err
		}
		m.Hugetlb = append(m.Hugetlb, h)
	}
	return nil
}

// parseUints parses space-separated numbers (cpuacct.usage_percpu).
func oracleParseUintList(s string) ([]uint64, error) {
	fields := strings.Fields(s)
	out := make([]uint64, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// oracleMetricsV2 reads the unified cgroup's files. A controller not enabled for
// the cgroup has no files, and is left out. "max" reads as math.MaxUint64.
func (c *Cgroup) oracleMetricsV2() (*v2stats.Metrics, error) {
	m := &v2stats.Metrics{}
	for _, read := range []func(*v2stats.Metrics) error{
		c.oraclePidsV2, c.oracleCPUV2, c.oracleMemoryV2, c.oracleIOV2, c.oracleHugetlbV2,
	} {
		if err := read(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (c *Cgroup) oraclePidsV2(m *v2stats.Metrics) error {
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

func (c *Cgroup) oracleCPUV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "cpu.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cpu := &v2stats.CPUStat{}
	oracleSetStatFields(cpu, s, nil) // usage_usec, user_usec, system_usec, nr_periods, nr_throttled, throttled_usec...
	m.CPU = cpu
	return nil
}

func (c *Cgroup) oracleMemoryV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "memory.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	mem := &v2stats.MemoryStat{}
	oracleSetStatFields(mem, s, nil)
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
		oracleSetStatFields(ev, s, nil) // low, high, max, oom, oom_kill, oom_group_kill
		m.MemoryEvents = ev
	} else if !cgroupFileMissing(err) {
		return err
	}
	return nil
}

func (c *Cgroup) oracleIOV2(m *v2stats.Metrics) error {
	s, err := readCgroupFile(c.unified, "io.stat")
	if cgroupFileMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := oracleParseIOStat(s)
	if err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(c.unified, "io.stat"), err)
	}
	m.Io = &v2stats.IOStat{Usage: entries}
	return nil
}

// parseIOStat parses io.stat: one "major:minor key=value..." line per device
// (rbytes, wbytes, rios, wios; other keys are ignored).
func oracleParseIOStat(data string) ([]*v2stats.IOEntry, error) {
	var entries []*v2stats.IOEntry
	for line := range strings.Lines(data) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		major, minor, err := oracleParseDeviceNumbers(fields[0])
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

func (c *Cgroup) oracleHugetlbV2(m *v2stats.Metrics) error {
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

// setStatFields copies a flat keyed file into the scalar uint64 fields of m
// whose proto names are the keys (after rename). Keys with no such field
// are ignored, so new kernel keys are harmless.
func oracleSetStatFields(m proto.Message, data string, rename func(string) string) {
	msg := m.ProtoReflect()
	fields := msg.Descriptor().Fields()
	eachStat(data, func(key string, value uint64) {
		if rename != nil {
			key = rename(key)
		}
		fd := fields.ByName(protoreflect.Name(key))
		if fd != nil && fd.Kind() == protoreflect.Uint64Kind && fd.Cardinality() != protoreflect.Repeated {
			msg.Set(fd, protoreflect.ValueOfUint64(value))
		}
	})
}
