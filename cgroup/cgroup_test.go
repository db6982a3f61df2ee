package cgroup

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/protobuf/proto"
)

// A hybrid machine's mountinfo: v1 controllers (cpu and cpuacct together),
// cgroup2 at /sys/fs/cgroup/unified, and a bind mount of a sub-cgroup.
const hybridMountinfo = `22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 22 0:31 /pods /mnt/my\040pods rw,relatime - cgroup cgroup rw,blkio
`

const unifiedMountinfo = `22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

func TestCgroupParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{
			name: "hybrid",
			in:   "9:name=systemd:/\n4:memory:/pod/ctr\n1:cpu,cpuacct:/pod/ctr\n0::/\n",
			want: map[string]string{"name=systemd": "/", "memory": "/pod/ctr", "cpu": "/pod/ctr", "cpuacct": "/pod/ctr", "": "/"},
		},
		{name: "unified", in: "0::/kubepods/pod1/ctr\n", want: map[string]string{"": "/kubepods/pod1/ctr"}},
		{name: "colon in path", in: "0::/a:b\n", want: map[string]string{"": "/a:b"}},
		{name: "no newline at end", in: "4:memory:/x", want: map[string]string{"memory": "/x"}},
		{name: "empty", in: "", want: map[string]string{}},
		{name: "missing field", in: "4:memory\n", wantErr: true},
		{name: "relative path", in: "4:memory:x\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcCgroup(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// parseMountinfo parses a mountinfo text as the shim's mount parser does.
func parseMountinfo(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	infos, err := mountinfo.GetMountsFromReader(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

func TestCgroupParseMounts(t *testing.T) {
	mounts := cgroupMounts(parseMountinfo(t, hybridMountinfo))
	if len(mounts) != 6 {
		t.Fatalf("got %d cgroup mounts, want 6: %+v", len(mounts), mounts)
	}
	if m := mounts[0]; m.point != "/sys/fs/cgroup/cpu,cpuacct" || !m.has("cpu") || !m.has("cpuacct") || m.v2 {
		t.Errorf("cpu mount: %+v", m)
	}
	if m := mounts[4]; m.point != "/sys/fs/cgroup/unified" || !m.v2 {
		t.Errorf("cgroup2 mount: %+v", m)
	}
	if m := mounts[5]; m.point != "/mnt/my pods" || m.root != "/pods" {
		t.Errorf("escaped bind mount: %+v", m)
	}
}

func TestCgroupLoadFromText(t *testing.T) {
	proc := "7:blkio:/pods/p1/c1\n4:memory:/pods/p1/c1\n1:cpu,cpuacct:/pods/p1/c1\n0::/\n"
	c, err := loadCgroup(42, proc, parseMountinfo(t, hybridMountinfo), false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory":  "/sys/fs/cgroup/memory/pods/p1/c1",
		"cpu":     "/sys/fs/cgroup/cpu,cpuacct/pods/p1/c1",
		"cpuacct": "/sys/fs/cgroup/cpu,cpuacct/pods/p1/c1",
		"blkio":   "/mnt/my pods/p1/c1", // mount root /pods stripped
	}
	if c.Version() != 1 || !reflect.DeepEqual(c.dirs, want) {
		t.Errorf("v1: version %d dirs %v, want %v", c.Version(), c.dirs, want)
	}

	c, err = loadCgroup(42, "0::/kubepods/p1/c1\n", parseMountinfo(t, unifiedMountinfo), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != 2 || c.unified != "/sys/fs/cgroup/kubepods/p1/c1" {
		t.Errorf("v2: version %d dir %q", c.Version(), c.unified)
	}

	if _, err := loadCgroup(42, "4:memory:/x\n", parseMountinfo(t, unifiedMountinfo), true); err == nil {
		t.Error("v2 without a 0:: line: no error")
	}
	if _, err := loadCgroup(42, "0::/x\n", parseMountinfo(t, hybridMountinfo), false); err == nil {
		t.Error("v1 without any controller: no error")
	}
}

func TestCgroupParseBlkio(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []*v1stats.BlkIOEntry
		wantErr bool
	}{
		{
			name: "ops",
			in:   "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n259:1 Read 1\nTotal 12289\n",
			want: []*v1stats.BlkIOEntry{
				{Major: 8, Minor: 0, Op: "Read", Value: 4096},
				{Major: 8, Minor: 0, Op: "Write", Value: 8192},
				{Major: 8, Minor: 0, Op: "Total", Value: 12288},
				{Major: 259, Minor: 1, Op: "Read", Value: 1},
			},
		},
		{name: "no ops", in: "8:16 77\n", want: []*v1stats.BlkIOEntry{{Major: 8, Minor: 16, Value: 77}}},
		{name: "only total", in: "Total 0\n", want: nil},
		{name: "bad device", in: "8-0 Read 1\n", wantErr: true},
		{name: "bad value", in: "8:0 Read x\n", wantErr: true},
		{name: "too many fields", in: "8:0 Read 1 2\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeBlkio(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !proto.Equal(got[i], tc.want[i]) {
					t.Errorf("entry %d: got %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCgroupParseIOStat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []*v2stats.IOEntry
		wantErr bool
	}{
		{
			name: "devices",
			in:   "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n253:1 rbytes=10 wbytes=20 rios=30 wios=40\n",
			want: []*v2stats.IOEntry{
				{Major: 8, Minor: 0, Rbytes: 1, Wbytes: 2, Rios: 3, Wios: 4},
				{Major: 253, Minor: 1, Rbytes: 10, Wbytes: 20, Rios: 30, Wios: 40},
			},
		},
		{name: "empty", in: "", want: nil},
		{name: "bad pair", in: "8:0 rbytes\n", wantErr: true},
		{name: "bad number", in: "8:0 rbytes=x\n", wantErr: true},
		{name: "bad device", in: "sda rbytes=1\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeIOStat(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !proto.Equal(got[i], tc.want[i]) {
					t.Errorf("entry %d: got %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCgroupMemoryStatV1Names(t *testing.T) {
	// Every scalar field of MemoryStat comes from a memory.stat key.
	stat := `cache 1
rss 2
rss_huge 3
shmem 99
mapped_file 4
dirty 5
writeback 6
swap 0
pgpgin 7
pgpgout 8
pgfault 9
pgmajfault 10
inactive_anon 11
active_anon 12
inactive_file 13
active_file 14
unevictable 15
hierarchical_memory_limit 16
hierarchical_memsw_limit 17
total_cache 18
total_rss 19
total_rss_huge 20
total_mapped_file 21
total_dirty 22
total_writeback 23
total_pgpgin 24
total_pgpgout 25
total_pgfault 26
total_pgmajfault 27
total_inactive_anon 28
total_active_anon 29
total_inactive_file 30
total_active_file 31
total_unevictable 32
`
	m := decodeMemoryStatV1(t, stat)
	want := &v1stats.MemoryStat{
		Cache: 1, RSS: 2, RSSHuge: 3, MappedFile: 4, Dirty: 5, Writeback: 6, PgPgIn: 7, PgPgOut: 8,
		PgFault: 9, PgMajFault: 10, InactiveAnon: 11, ActiveAnon: 12, InactiveFile: 13, ActiveFile: 14,
		Unevictable: 15, HierarchicalMemoryLimit: 16, HierarchicalSwapLimit: 17, TotalCache: 18,
		TotalRSS: 19, TotalRSSHuge: 20, TotalMappedFile: 21, TotalDirty: 22, TotalWriteback: 23,
		TotalPgPgIn: 24, TotalPgPgOut: 25, TotalPgFault: 26, TotalPgMajFault: 27, TotalInactiveAnon: 28,
		TotalActiveAnon: 29, TotalInactiveFile: 30, TotalActiveFile: 31, TotalUnevictable: 32,
	}
	if !proto.Equal(m, want) {
		t.Errorf("got %v\nwant %v", m, want)
	}
}

func TestCgroupEachKV(t *testing.T) {
	got := map[string]uint64{}
	eachStat("a 1\nb  2\n\nbad\nc x\nd 18446744073709551615\n", func(k string, v uint64) { got[k] = v })
	want := map[string]uint64{"a": 1, "b": 2, "d": math.MaxUint64}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if v, ok := statValue("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"); !ok || v != 3 {
		t.Errorf("kvValue oom_kill = %d, %v", v, ok)
	}
}

func TestCgroupParseUint(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ifMax   uint64
		want    uint64
		wantErr bool
	}{
		{"123", 0, 123, false},
		{"max", 0, 0, false},
		{"max", math.MaxUint64, math.MaxUint64, false},
		{"-1", 0, 0, false},
		{"9223372036854771712", 0, 9223372036854771712, false},
		{"x", 0, 0, true},
	} {
		got, err := parseCgroupUint("f", tc.in, tc.ifMax)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseCgroupUint(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if got := hugePageName(2 << 20); got != "2MB" {
		t.Errorf("hugePageName(2M) = %q", got)
	}
	if got := hugePageName(1 << 30); got != "1GB" {
		t.Errorf("hugePageName(1G) = %q", got)
	}
	if got := hugePageName(64 << 10); got != "64KB" {
		t.Errorf("hugePageName(64K) = %q", got)
	}
}

// writeFiles makes a fake cgroup directory.
func writeCgroupFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupMetricsV1Files(t *testing.T) {
	root := t.TempDir()
	dirs := map[string]string{
		"memory":  filepath.Join(root, "memory"),
		"cpu":     filepath.Join(root, "cpu"),
		"cpuacct": filepath.Join(root, "cpuacct"),
		"pids":    filepath.Join(root, "pids"),
		"blkio":   filepath.Join(root, "blkio"),
	}
	writeCgroupFiles(t, dirs["memory"], map[string]string{
		"memory.stat":                 "cache 4096\nrss 8192\ntotal_rss 8192\npgfault 3\n",
		"memory.usage_in_bytes":       "12288\n",
		"memory.max_usage_in_bytes":   "20000\n",
		"memory.failcnt":              "2\n",
		"memory.limit_in_bytes":       "8388608\n",
		"memory.memsw.usage_in_bytes": "12288\n",
		"memory.memsw.limit_in_bytes": "9223372036854771712\n",
		"memory.kmem.usage_in_bytes":  "100\n",
		"memory.oom_control":          "oom_kill_disable 0\nunder_oom 1\noom_kill 4\n",
		"memory.kmem.tcp.failcnt":     "0\n", // no usage file: no entry
		"memory.memsw.failcnt":        "0\n",
	})
	writeCgroupFiles(t, dirs["cpu"], map[string]string{"cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 5000\nnr_bursts 0\n"})
	writeCgroupFiles(t, dirs["cpuacct"], map[string]string{
		"cpuacct.usage":        "3000000000\n",
		"cpuacct.usage_percpu": "1000000000 2000000000 \n",
		"cpuacct.stat":         "user 150\nsystem 50\n",
	})
	writeCgroupFiles(t, dirs["pids"], map[string]string{"pids.current": "3\n", "pids.max": "max\n"})
	writeCgroupFiles(t, dirs["blkio"], map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
		"blkio.throttle.io_serviced_recursive":      "Total 0\n",
	})

	c := &Cgroup{pid: 1, version: 1, dirs: dirs}
	msg, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	m := msg.(*v1stats.Metrics)
	if m.Pids.GetCurrent() != 3 || m.Pids.GetLimit() != 0 {
		t.Errorf("pids %v", m.Pids)
	}
	u := m.CPU.GetUsage()
	if u.GetTotal() != 3e9 || !reflect.DeepEqual(u.GetPerCPU(), []uint64{1e9, 2e9}) || u.GetUser() != 1.5e9 || u.GetKernel() != 0.5e9 {
		t.Errorf("cpu usage %v", u)
	}
	if th := m.CPU.GetThrottling(); th.GetPeriods() != 10 || th.GetThrottledPeriods() != 3 || th.GetThrottledTime() != 5000 {
		t.Errorf("throttling %v", th)
	}
	mem := m.Memory
	if mem.GetCache() != 4096 || mem.GetRSS() != 8192 || mem.GetTotalRSS() != 8192 || mem.GetPgFault() != 3 {
		t.Errorf("memory.stat %v", mem)
	}
	if e := mem.GetUsage(); e.GetUsage() != 12288 || e.GetMax() != 20000 || e.GetFailcnt() != 2 || e.GetLimit() != 8<<20 {
		t.Errorf("memory usage %v", e)
	}
	if e := mem.GetSwap(); e.GetUsage() != 12288 || e.GetLimit() != 9223372036854771712 {
		t.Errorf("memsw %v", e)
	}
	if mem.GetKernel().GetUsage() != 100 || mem.KernelTCP != nil {
		t.Errorf("kmem %v, kmem.tcp %v", mem.Kernel, mem.KernelTCP)
	}
	if oc := m.MemoryOomControl; oc.GetUnderOom() != 1 || oc.GetOomKill() != 4 {
		t.Errorf("oom_control %v", oc)
	}
	b := m.Blkio
	if len(b.GetIoServiceBytesRecursive()) != 2 || b.IoServiceBytesRecursive[0].Value != 4096 || len(b.GetIoServicedRecursive()) != 0 {
		t.Errorf("blkio %v", b)
	}

	// A missing controller is no error; a removed cgroup is.
	delete(c.dirs, "blkio")
	c.dirs["pids"] = filepath.Join(root, "nonexistent")
	msg, err = c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if m := msg.(*v1stats.Metrics); m.Pids != nil || m.Blkio != nil || m.Memory == nil {
		t.Errorf("partial metrics: %v", m)
	}
	c.dirs = map[string]string{"memory": filepath.Join(root, "gone")}
	if _, err := c.Metrics(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed cgroup: err = %v, want ErrNotExist", err)
	}
}

func TestCgroupMetricsV2Files(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ctr")
	writeCgroupFiles(t, dir, map[string]string{
		"pids.current": "2\n",
		"pids.max":     "max\n",
		"cpu.stat": "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 5\nnr_throttled 1\n" +
			"throttled_usec 77\nnr_bursts 0\nburst_usec 0\n",
		"memory.stat": "anon 4096\nfile 8192\nkernel_stack 16384\nslab 100\nsock 0\nshmem 0\nfile_mapped 1\n" +
			"pgfault 9\npgmajfault 1\nworkingset_refault_anon 2\nworkingset_refault_file 3\n" +
			"workingset_activate_anon 4\nworkingset_activate_file 5\nthp_fault_alloc 6\n",
		"memory.current":      "12288\n",
		"memory.max":          "max\n",
		"memory.peak":         "20000\n",
		"memory.swap.current": "0\n",
		"memory.swap.max":     "1048576\n",
		"memory.events":       "low 0\nhigh 1\nmax 2\noom 3\noom_kill 2\noom_group_kill 0\n",
		"io.stat":             "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
	})
	c := &Cgroup{pid: 1, version: 2, unified: dir}
	msg, err := c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	m := msg.(*v2stats.Metrics)
	if m.Pids.GetCurrent() != 2 || m.Pids.GetLimit() != math.MaxUint64 {
		t.Errorf("pids %v", m.Pids)
	}
	want := &v2stats.CPUStat{UsageUsec: 1000, UserUsec: 600, SystemUsec: 400, NrPeriods: 5, NrThrottled: 1, ThrottledUsec: 77}
	if !proto.Equal(m.CPU, want) {
		t.Errorf("cpu %v, want %v", m.CPU, want)
	}
	mem := m.Memory
	if mem.GetAnon() != 4096 || mem.GetFile() != 8192 || mem.GetKernelStack() != 16384 || mem.GetPgfault() != 9 ||
		mem.GetWorkingsetRefault() != 5 || mem.GetWorkingsetActivate() != 9 || mem.GetThpFaultAlloc() != 6 {
		t.Errorf("memory.stat %v", mem)
	}
	if mem.GetUsage() != 12288 || mem.GetUsageLimit() != math.MaxUint64 || mem.GetMaxUsage() != 20000 ||
		mem.GetSwapUsage() != 0 || mem.GetSwapLimit() != 1<<20 || mem.GetSwapMaxUsage() != 0 {
		t.Errorf("memory usage %v", mem)
	}
	wantEv := &v2stats.MemoryEvents{High: 1, Max: 2, Oom: 3, OomKill: 2}
	if !proto.Equal(m.MemoryEvents, wantEv) {
		t.Errorf("memory.events %v, want %v", m.MemoryEvents, wantEv)
	}
	if len(m.Io.GetUsage()) != 1 || m.Io.Usage[0].Rbytes != 4096 || m.Io.Usage[0].Rios != 1 {
		t.Errorf("io %v", m.Io)
	}

	// Controllers not enabled: no files, no error.
	for _, name := range []string{"pids.current", "memory.stat", "io.stat"} {
		os.Remove(filepath.Join(dir, name))
	}
	msg, err = c.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if m := msg.(*v2stats.Metrics); m.Pids != nil || m.Memory != nil || m.Io != nil || m.CPU == nil {
		t.Errorf("partial metrics: %v", m)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Metrics(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed cgroup: err = %v, want ErrNotExist", err)
	}
}
