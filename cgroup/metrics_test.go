package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Metrics decodes what AppendMetrics writes into the typed message: the
// tests look at metrics this way.
func (c *Cgroup) Metrics() (proto.Message, error) {
	data, typeURL, err := c.AppendMetrics(nil)
	if err != nil {
		return nil, err
	}
	var m proto.Message
	switch typeURL {
	case MetricsV1TypeURL:
		m = &v1stats.Metrics{}
	case MetricsV2TypeURL:
		m = &v2stats.Metrics{}
	default:
		return nil, fmt.Errorf("type URL %q", typeURL)
	}
	if string(proto.MessageName(m)) != typeURL {
		return nil, fmt.Errorf("type URL %q names %s", typeURL, proto.MessageName(m))
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typeURL, err)
	}
	return m, nil
}

// decodeBlkio writes a blkio file's entries and decodes them back.
func decodeBlkio(in string) ([]*v1stats.BlkIOEntry, error) {
	var w pbWriter
	if _, err := blkioEntries(&w, 1, []byte(in), func(uint64, uint64) []byte { return nil }); err != nil {
		return nil, err
	}
	var stat v1stats.BlkIOStat
	if err := proto.Unmarshal(w.b, &stat); err != nil {
		return nil, err
	}
	return stat.IoServiceBytesRecursive, nil
}

// decodeIOStat writes io.stat's entries and decodes them back.
func decodeIOStat(in string) ([]*v2stats.IOEntry, error) {
	var w pbWriter
	if err := ioEntries(&w, v2IOStatUsage, []byte(in)); err != nil {
		return nil, err
	}
	var stat v2stats.IOStat
	if err := proto.Unmarshal(w.b, &stat); err != nil {
		return nil, err
	}
	return stat.Usage, nil
}

// decodeMemoryStatV1 reads a v1 memory.stat as memoryV1 does.
func decodeMemoryStatV1(t *testing.T, stat string) *v1stats.MemoryStat {
	t.Helper()
	dir := t.TempDir()
	writeCgroupFiles(t, dir, map[string]string{"memory.stat": stat})
	msg, err := (&Cgroup{pid: 1, version: 1, dirs: map[string]string{"memory": dir}}).Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*v1stats.Metrics).Memory
}

// TestFieldNumbers checks the field numbers the encoder writes against the
// descriptors of containerd's metrics messages.
func TestFieldNumbers(t *testing.T) {
	check := func(msg proto.Message, fields keyedFields, skip ...string) {
		t.Helper()
		d := msg.ProtoReflect().Descriptor()
		for i, name := range fields {
			if name == "" {
				continue
			}
			fd := d.Fields().ByNumber(protoreflect.FieldNumber(i))
			if fd == nil || string(fd.Name()) != name || fd.Kind() != protoreflect.Uint64Kind || fd.IsList() {
				t.Errorf("%s field %d: table says uint64 %q, descriptor says %v", d.FullName(), i, name, fd)
			}
		}
		// Every uint64 scalar of the message is in the table, but those
		// filled from elsewhere.
		for i := 0; i < d.Fields().Len(); i++ {
			fd := d.Fields().Get(i)
			if fd.Kind() != protoreflect.Uint64Kind || fd.IsList() || contains(skip, string(fd.Name())) {
				continue
			}
			if n := int(fd.Number()); n >= len(fields) || fields[n] != string(fd.Name()) {
				t.Errorf("%s: field %s (%d) is not in the table", d.FullName(), fd.Name(), fd.Number())
			}
		}
	}
	check(&v1stats.MemoryStat{}, v1MemoryStatFields)
	check(&v1stats.MemoryOomControl{}, v1MemoryOomControlFields)
	check(&v2stats.CPUStat{}, v2CPUStatFields)
	check(&v2stats.MemoryStat{}, v2MemoryStatFields, "usage", "usage_limit", "swap_usage", "swap_limit", "max_usage", "swap_max_usage")
	check(&v2stats.MemoryEvents{}, v2MemoryEventsFields)

	number := func(msg proto.Message, name string, want int) {
		t.Helper()
		d := msg.ProtoReflect().Descriptor()
		fd := d.Fields().ByName(protoreflect.Name(name))
		if fd == nil || int(fd.Number()) != want {
			t.Errorf("%s.%s: field %v, the encoder writes %d", d.FullName(), name, fd, want)
		}
	}
	for _, f := range []struct {
		msg  proto.Message
		name string
		num  int
	}{
		{&v1stats.Metrics{}, "hugetlb", v1MetricsHugetlb}, {&v1stats.Metrics{}, "pids", v1MetricsPids},
		{&v1stats.Metrics{}, "cpu", v1MetricsCPU}, {&v1stats.Metrics{}, "memory", v1MetricsMemory},
		{&v1stats.Metrics{}, "blkio", v1MetricsBlkio}, {&v1stats.Metrics{}, "memory_oom_control", v1MetricsMemoryOomControl},
		{&v1stats.HugetlbStat{}, "usage", v1HugetlbUsage}, {&v1stats.HugetlbStat{}, "max", v1HugetlbMax},
		{&v1stats.HugetlbStat{}, "failcnt", v1HugetlbFailcnt}, {&v1stats.HugetlbStat{}, "pagesize", v1HugetlbPagesize},
		{&v1stats.PidsStat{}, "current", v1PidsCurrent}, {&v1stats.PidsStat{}, "limit", v1PidsLimit},
		{&v1stats.CPUStat{}, "usage", v1CPUUsage}, {&v1stats.CPUStat{}, "throttling", v1CPUThrottling},
		{&v1stats.CPUUsage{}, "total", v1CPUUsageTotal}, {&v1stats.CPUUsage{}, "kernel", v1CPUUsageKernel},
		{&v1stats.CPUUsage{}, "user", v1CPUUsageUser}, {&v1stats.CPUUsage{}, "per_cpu", v1CPUUsagePerCPU},
		{&v1stats.Throttle{}, "periods", v1ThrottlePeriods}, {&v1stats.Throttle{}, "throttled_periods", v1ThrottleThrottledPeriods},
		{&v1stats.Throttle{}, "throttled_time", v1ThrottleThrottledTime},
		{&v1stats.MemoryStat{}, "usage", v1MemoryUsage}, {&v1stats.MemoryStat{}, "swap", v1MemorySwap},
		{&v1stats.MemoryStat{}, "kernel", v1MemoryKernel}, {&v1stats.MemoryStat{}, "kernel_tcp", v1MemoryKernelTCP},
		{&v1stats.MemoryEntry{}, "limit", v1MemoryEntryLimit}, {&v1stats.MemoryEntry{}, "usage", v1MemoryEntryUsage},
		{&v1stats.MemoryEntry{}, "max", v1MemoryEntryMax}, {&v1stats.MemoryEntry{}, "failcnt", v1MemoryEntryFailcnt},
		{&v1stats.BlkIOEntry{}, "op", v1BlkioEntryOp}, {&v1stats.BlkIOEntry{}, "device", v1BlkioEntryDevice},
		{&v1stats.BlkIOEntry{}, "major", v1BlkioEntryMajor}, {&v1stats.BlkIOEntry{}, "minor", v1BlkioEntryMinor},
		{&v1stats.BlkIOEntry{}, "value", v1BlkioEntryValue},
		{&v1stats.BlkIOStat{}, "io_service_bytes_recursive", 1}, {&v1stats.BlkIOStat{}, "io_serviced_recursive", 2},
		{&v1stats.BlkIOStat{}, "io_queued_recursive", 3}, {&v1stats.BlkIOStat{}, "io_service_time_recursive", 4},
		{&v1stats.BlkIOStat{}, "io_wait_time_recursive", 5}, {&v1stats.BlkIOStat{}, "io_merged_recursive", 6},
		{&v1stats.BlkIOStat{}, "io_time_recursive", 7}, {&v1stats.BlkIOStat{}, "sectors_recursive", 8},
		{&v2stats.Metrics{}, "pids", v2MetricsPids}, {&v2stats.Metrics{}, "cpu", v2MetricsCPU},
		{&v2stats.Metrics{}, "memory", v2MetricsMemory}, {&v2stats.Metrics{}, "io", v2MetricsIo},
		{&v2stats.Metrics{}, "hugetlb", v2MetricsHugetlb}, {&v2stats.Metrics{}, "memory_events", v2MetricsMemoryEvents},
		{&v2stats.PidsStat{}, "current", v2PidsCurrent}, {&v2stats.PidsStat{}, "limit", v2PidsLimit},
		{&v2stats.MemoryStat{}, "workingset_refault", v2MemoryWorkingsetRefault},
		{&v2stats.MemoryStat{}, "workingset_activate", v2MemoryWorkingsetActivate},
		{&v2stats.MemoryStat{}, "usage", v2MemoryUsage}, {&v2stats.MemoryStat{}, "usage_limit", v2MemoryUsageLimit},
		{&v2stats.MemoryStat{}, "swap_usage", v2MemorySwapUsage}, {&v2stats.MemoryStat{}, "swap_limit", v2MemorySwapLimit},
		{&v2stats.MemoryStat{}, "max_usage", v2MemoryMaxUsage}, {&v2stats.MemoryStat{}, "swap_max_usage", v2MemorySwapMaxUsage},
		{&v2stats.IOStat{}, "usage", v2IOStatUsage},
		{&v2stats.IOEntry{}, "major", v2IOEntryMajor}, {&v2stats.IOEntry{}, "minor", v2IOEntryMinor},
		{&v2stats.IOEntry{}, "rbytes", v2IOEntryRbytes}, {&v2stats.IOEntry{}, "wbytes", v2IOEntryWbytes},
		{&v2stats.IOEntry{}, "rios", v2IOEntryRios}, {&v2stats.IOEntry{}, "wios", v2IOEntryWios},
		{&v2stats.HugeTlbStat{}, "current", v2HugetlbCurrent}, {&v2stats.HugeTlbStat{}, "max", v2HugetlbMax},
		{&v2stats.HugeTlbStat{}, "pagesize", v2HugetlbPagesize}, {&v2stats.HugeTlbStat{}, "failcnt", v2HugetlbFailcnt},
	} {
		number(f.msg, f.name, f.num)
	}
	if MetricsV1TypeURL != string(proto.MessageName(&v1stats.Metrics{})) || MetricsV2TypeURL != string(proto.MessageName(&v2stats.Metrics{})) {
		t.Errorf("type URLs %s, %s", MetricsV1TypeURL, MetricsV2TypeURL)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// randomFiles is a random cgroup directory's files for the oracle test:
// each known file there or not, with well-formed values mostly, and now
// and then a line or a value that is not.
type randomFiles struct {
	r *rand.Rand
}

func (g randomFiles) num() string {
	switch g.r.IntN(12) {
	case 0:
		return "max"
	case 1:
		return "-1"
	case 2:
		return "18446744073709551615"
	case 3:
		return "0"
	case 4:
		if g.r.IntN(4) == 0 {
			return "x1" // not a number
		}
	}
	return fmt.Sprint(g.r.Uint64N(1 << uint(g.r.IntN(64))))
}

// keyed is a flat keyed file of some of keys, in a random order, with an
// unknown key and a malformed line now and then.
func (g randomFiles) keyed(keys ...string) string {
	var b strings.Builder
	for _, i := range g.r.Perm(len(keys)) {
		if g.r.IntN(5) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s %s\n", keys[i], g.num())
	}
	switch g.r.IntN(8) {
	case 0:
		b.WriteString("new_kernel_key 5\n")
	case 1:
		b.WriteString("malformed\n")
	case 2:
		b.WriteString("\n  spaced   7  \n")
	}
	return b.String()
}

func (g randomFiles) maybe(files map[string]string, name, content string) {
	if g.r.IntN(6) != 0 {
		files[name] = content
	}
}

func (g randomFiles) blkio() string {
	var b strings.Builder
	for d := g.r.IntN(3); d > 0; d-- {
		dev := fmt.Sprintf("%d:%d", g.r.IntN(300), g.r.IntN(20))
		if g.r.IntN(10) == 0 {
			fmt.Fprintf(&b, "%s %s\n", dev, g.num())
			continue
		}
		for _, op := range []string{"Read", "Write", "Sync", "Async", "Discard", "Total"} {
			fmt.Fprintf(&b, "%s %s %s\n", dev, op, g.num())
		}
	}
	fmt.Fprintf(&b, "Total %s\n", g.num())
	return b.String()
}

func (g randomFiles) v1(dirs map[string]string) {
	memKeys := []string{"cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap", "pgpgin", "pgpgout",
		"pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
		"hierarchical_memory_limit", "hierarchical_memsw_limit", "total_cache", "total_rss", "total_pgpgin",
		"total_pgfault", "total_pgmajfault", "total_hierarchical_memsw_limit", "total_unevictable", "usage"}
	files := map[string]string{}
	g.maybe(files, "memory.stat", g.keyed(memKeys...))
	for _, prefix := range []string{"memory.", "memory.memsw.", "memory.kmem.", "memory.kmem.tcp."} {
		for _, f := range []string{"usage_in_bytes", "max_usage_in_bytes", "failcnt", "limit_in_bytes"} {
			g.maybe(files, prefix+f, g.num()+"\n")
		}
	}
	g.maybe(files, "memory.oom_control", g.keyed("oom_kill_disable", "under_oom", "oom_kill"))
	writeFiles(dirs["memory"], files)

	files = map[string]string{}
	g.maybe(files, "cpuacct.usage", g.num()+"\n")
	percpu := ""
	for n := g.r.IntN(4); n > 0; n-- {
		percpu += g.num() + " "
	}
	g.maybe(files, "cpuacct.usage_percpu", percpu+"\n")
	g.maybe(files, "cpuacct.stat", g.keyed("user", "system"))
	writeFiles(dirs["cpuacct"], files)
	files = map[string]string{}
	g.maybe(files, "cpu.stat", g.keyed("nr_periods", "nr_throttled", "throttled_time", "nr_bursts"))
	writeFiles(dirs["cpu"], files)

	files = map[string]string{}
	g.maybe(files, "pids.current", g.num()+"\n")
	g.maybe(files, "pids.max", g.num()+"\n")
	writeFiles(dirs["pids"], files)

	files = map[string]string{}
	for list := 1; list < len(v1BlkioFiles); list++ {
		for _, name := range v1BlkioFiles[list] {
			g.maybe(files, name, g.blkio())
		}
	}
	writeFiles(dirs["blkio"], files)

	files = map[string]string{}
	for _, size := range hugePageSizes() {
		for _, f := range []string{"usage_in_bytes", "max_usage_in_bytes", "failcnt"} {
			g.maybe(files, "hugetlb."+size+"."+f, g.num()+"\n")
		}
	}
	writeFiles(dirs["hugetlb"], files)
}

func (g randomFiles) v2(dir string) {
	files := map[string]string{}
	g.maybe(files, "pids.current", g.num()+"\n")
	g.maybe(files, "pids.max", g.num()+"\n")
	g.maybe(files, "cpu.stat", g.keyed("usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec", "nr_bursts", "burst_usec"))
	g.maybe(files, "memory.stat", g.keyed("anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty",
		"anon_thp", "inactive_anon", "slab_reclaimable", "pgfault", "pgmajfault", "workingset_refault", "workingset_activate",
		"workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon", "workingset_activate_file",
		"workingset_nodereclaim", "pgscan", "thp_fault_alloc", "thp_collapse_alloc", "usage", "swap_usage"))
	for _, f := range []string{"memory.current", "memory.max", "memory.peak", "memory.swap.current", "memory.swap.max", "memory.swap.peak"} {
		g.maybe(files, f, g.num()+"\n")
	}
	g.maybe(files, "memory.events", g.keyed("low", "high", "max", "oom", "oom_kill", "oom_group_kill"))
	var io strings.Builder
	for d := g.r.IntN(3); d > 0; d-- {
		fmt.Fprintf(&io, "%d:%d rbytes=%s wbytes=%s rios=%s wios=%s dbytes=1 dios=2\n", g.r.IntN(300), g.r.IntN(20), g.num(), g.num(), g.num(), g.num())
	}
	g.maybe(files, "io.stat", io.String())
	for _, size := range hugePageSizes() {
		g.maybe(files, "hugetlb."+size+".current", g.num()+"\n")
		g.maybe(files, "hugetlb."+size+".max", g.num()+"\n")
		g.maybe(files, "hugetlb."+size+".events", g.keyed("max"))
	}
	writeFiles(dir, files)
}

// writeFiles makes a fake cgroup directory; none for a controller the
// cgroup has not ("").
func writeFiles(dir string, files map[string]string) {
	if dir == "" {
		return
	}
	os.MkdirAll(dir, 0o755)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			panic(err)
		}
	}
}

// TestMetricsMatchOracle: for random cgroup files, what AppendMetrics writes
// decodes to the message the typed, reflection-filled code built, and one
// fails where the other does.
func TestMetricsMatchOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		root := t.TempDir()
		var c *Cgroup
		if i%2 == 0 {
			dirs := map[string]string{}
			for _, ctrl := range v1Controllers {
				if r.IntN(8) != 0 {
					dirs[ctrl] = filepath.Join(root, ctrl)
				}
			}
			randomFiles{r}.v1(dirs)
			c = &Cgroup{pid: 1, version: 1, dirs: dirs}
		} else {
			c = &Cgroup{pid: 1, version: 2, unified: filepath.Join(root, "unified")}
			randomFiles{r}.v2(c.unified)
		}
		want, wantErr := c.oracleMetrics()
		got, err := c.Metrics()
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("case %d (v%d): error %v, the oracle's %v", i, c.version, err, wantErr)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) != errors.Is(wantErr, fs.ErrNotExist) {
				t.Fatalf("case %d: error %v, the oracle's %v", i, err, wantErr)
			}
			continue
		}
		if !proto.Equal(got, want) {
			t.Fatalf("case %d (v%d):\ngot  %v\nwant %v", i, c.version, got, want)
		}
	}
}

// TestMetricsAllocations: reading a cgroup's metrics into a buffer large
// enough allocates nothing, however often a shim is polled.
func TestMetricsAllocations(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, version := range []int{1, 2} {
		root := t.TempDir()
		c := &Cgroup{pid: 1, version: version, unified: filepath.Join(root, "unified"), dirs: map[string]string{}}
		if version == 1 {
			for _, ctrl := range v1Controllers {
				c.dirs[ctrl] = filepath.Join(root, ctrl)
			}
		}
		// Every file there, well formed.
		for {
			if version == 1 {
				randomFiles{r}.v1(c.dirs)
			} else {
				randomFiles{r}.v2(c.unified)
			}
			if _, err := c.oracleMetrics(); err == nil {
				break
			}
		}
		buf := make([]byte, 0, 64<<10)
		allocs := testing.AllocsPerRun(100, func() {
			out, _, err := c.AppendMetrics(buf[:0])
			if err != nil || len(out) == 0 {
				t.Fatalf("metrics: %d bytes, %v", len(out), err)
			}
		})
		if allocs != 0 {
			t.Errorf("v%d: %v allocations per call, want 0", version, allocs)
		}
	}
}
