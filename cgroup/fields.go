package cgroup

import "google.golang.org/protobuf/encoding/protowire"

// The field numbers of the metrics messages the shim writes: containerd's
// io.containerd.cgroups.v1.Metrics and io.containerd.cgroups.v2.Metrics
// (github.com/containerd/cgroups/v3, cgroup1/stats and cgroup2/stats
// metrics.proto). TestFieldNumbers checks them against those descriptors.

// keyedFields maps the keys of a flat keyed cgroup file to the uint64
// fields of a message of the same names: index i is the name of field i
// ("" where the field is not such a scalar).
type keyedFields []string

func (f keyedFields) number(key []byte) protowire.Number {
	for i, name := range f {
		if name != "" && name == string(key) {
			return protowire.Number(i)
		}
	}
	return 0
}

// numberOf is number for a key that is a string.
func (f keyedFields) numberOf(key string) protowire.Number {
	for i, name := range f {
		if name != "" && name == key {
			return protowire.Number(i)
		}
	}
	return 0
}

// io.containerd.cgroups.v1.Metrics
const (
	v1MetricsHugetlb          = 1
	v1MetricsPids             = 2
	v1MetricsCPU              = 3
	v1MetricsMemory           = 4
	v1MetricsBlkio            = 5
	v1MetricsMemoryOomControl = 9

	v1HugetlbUsage    = 1
	v1HugetlbMax      = 2
	v1HugetlbFailcnt  = 3
	v1HugetlbPagesize = 4

	v1PidsCurrent = 1
	v1PidsLimit   = 2

	v1CPUUsage      = 1
	v1CPUThrottling = 2

	v1CPUUsageTotal  = 1
	v1CPUUsageKernel = 2
	v1CPUUsageUser   = 3
	v1CPUUsagePerCPU = 4

	v1ThrottlePeriods          = 1
	v1ThrottleThrottledPeriods = 2
	v1ThrottleThrottledTime    = 3

	v1MemoryUsage     = 33
	v1MemorySwap      = 34
	v1MemoryKernel    = 35
	v1MemoryKernelTCP = 36

	v1MemoryEntryLimit   = 1
	v1MemoryEntryUsage   = 2
	v1MemoryEntryMax     = 3
	v1MemoryEntryFailcnt = 4

	v1BlkioEntryOp     = 1
	v1BlkioEntryDevice = 2
	v1BlkioEntryMajor  = 3
	v1BlkioEntryMinor  = 4
	v1BlkioEntryValue  = 5
)

// v1MemoryStatFields: MemoryStat's scalars, named as in memory.stat after
// v1MemoryStatKey.
var v1MemoryStatFields = keyedFields{
	1: "cache", 2: "rss", 3: "rss_huge", 4: "mapped_file", 5: "dirty", 6: "writeback",
	7: "pg_pg_in", 8: "pg_pg_out", 9: "pg_fault", 10: "pg_maj_fault",
	11: "inactive_anon", 12: "active_anon", 13: "inactive_file", 14: "active_file", 15: "unevictable",
	16: "hierarchical_memory_limit", 17: "hierarchical_swap_limit",
	18: "total_cache", 19: "total_rss", 20: "total_rss_huge", 21: "total_mapped_file", 22: "total_dirty",
	23: "total_writeback", 24: "total_pg_pg_in", 25: "total_pg_pg_out", 26: "total_pg_fault",
	27: "total_pg_maj_fault", 28: "total_inactive_anon", 29: "total_active_anon", 30: "total_inactive_file",
	31: "total_active_file", 32: "total_unevictable",
}

// v1MemoryOomControlFields: memory.oom_control.
var v1MemoryOomControlFields = keyedFields{1: "oom_kill_disable", 2: "under_oom", 3: "oom_kill"}

// v1BlkioFiles: BlkIOStat's lists (field i) and the files each comes
// from, the first of them that has entries. The CFQ files (kernels before
// 5.0) come first; newer kernels only have the throttle policy's, which
// count all the I/O of the cgroup.
var v1BlkioFiles = [...][]string{
	1: {"blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"},
	2: {"blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive", "blkio.throttle.io_serviced"},
	3: {"blkio.io_queued_recursive"},
	4: {"blkio.io_service_time_recursive"},
	5: {"blkio.io_wait_time_recursive"},
	6: {"blkio.io_merged_recursive"},
	7: {"blkio.time_recursive"},
	8: {"blkio.sectors_recursive"},
}

// io.containerd.cgroups.v2.Metrics
const (
	v2MetricsPids         = 1
	v2MetricsCPU          = 2
	v2MetricsMemory       = 4
	v2MetricsIo           = 6
	v2MetricsHugetlb      = 7
	v2MetricsMemoryEvents = 8

	v2PidsCurrent = 1
	v2PidsLimit   = 2

	v2MemoryWorkingsetRefault  = 20
	v2MemoryWorkingsetActivate = 21
	v2MemoryUsage              = 32
	v2MemoryUsageLimit         = 33
	v2MemorySwapUsage          = 34
	v2MemorySwapLimit          = 35
	v2MemoryMaxUsage           = 36
	v2MemorySwapMaxUsage       = 37

	v2IOStatUsage = 1

	v2IOEntryMajor  = 1
	v2IOEntryMinor  = 2
	v2IOEntryRbytes = 3
	v2IOEntryWbytes = 4
	v2IOEntryRios   = 5
	v2IOEntryWios   = 6

	v2HugetlbCurrent  = 1
	v2HugetlbMax      = 2
	v2HugetlbPagesize = 3
	v2HugetlbFailcnt  = 4
)

// v2CPUStatFields: cpu.stat.
var v2CPUStatFields = keyedFields{
	1: "usage_usec", 2: "user_usec", 3: "system_usec", 4: "nr_periods", 5: "nr_throttled", 6: "throttled_usec",
	8: "nr_bursts", 9: "burst_usec",
}

// v2MemoryStatFields: memory.stat. The fields the shim fills from other
// files (usage and limits, 32-37) are left out: a memory.stat key of one
// of their names would not be theirs.
var v2MemoryStatFields = keyedFields{
	1: "anon", 2: "file", 3: "kernel_stack", 4: "slab", 5: "sock", 6: "shmem", 7: "file_mapped",
	8: "file_dirty", 9: "file_writeback", 10: "anon_thp", 11: "inactive_anon", 12: "active_anon",
	13: "inactive_file", 14: "active_file", 15: "unevictable", 16: "slab_reclaimable", 17: "slab_unreclaimable",
	18: "pgfault", 19: "pgmajfault", 20: "workingset_refault", 21: "workingset_activate",
	22: "workingset_nodereclaim", 23: "pgrefill", 24: "pgscan", 25: "pgsteal", 26: "pgactivate",
	27: "pgdeactivate", 28: "pglazyfree", 29: "pglazyfreed", 30: "thp_fault_alloc", 31: "thp_collapse_alloc",
}

// v2MemoryEventsFields: memory.events.
var v2MemoryEventsFields = keyedFields{1: "low", 2: "high", 3: "max", 4: "oom", 5: "oom_kill", 6: "oom_group_kill"}
