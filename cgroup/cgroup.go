// Package cgroup is a container's (or a pod's) cgroup, v1 or v2: its
// metrics and its OOM kills, read from the kernel's files. It is a leaf: it
// knows nothing of processes, runtimes or the task API.
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Cgroup is a container's cgroup, found from a pid of the container (its
// init). On cgroup v1 it is one directory per controller, on v2 one unified
// directory. The directories are resolved once, by Load, so AppendMetrics
// and WatchOOM keep working after the pid is gone, for as long as the
// cgroup exists.
//
// This package reads the cgroup files itself: github.com/containerd/cgroups/v3
// would pull cilium/ebpf, godbus and go-systemd into the shim. Its metrics
// messages are written in their wire format (metrics.go), so not even their
// generated types are needed outside the tests.
type Cgroup struct {
	pid     int
	version int
	unified string            // v2: the cgroup's directory
	dirs    map[string]string // v1: controller -> the cgroup's directory in its hierarchy

	mu     sync.Mutex   // guards oom and unread
	oom    oomWatch     // the running WatchOOM, nil when none
	unread *unreadKills // what a watch stopped by the cgroup's removal could not read
}

// cgroupRoot is where the cgroup hierarchies are mounted. The machine is v2
// (unified) only if cgroup2 is mounted right here: on a hybrid machine (v1
// controllers, cgroup2 at cgroupRoot/unified) runc puts containers in the v1
// controllers, so their cgroups are v1.
const cgroupRoot = "/sys/fs/cgroup"

// v1Controllers are the v1 controllers the shim reads.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb"}

// Load finds the cgroup of pid from /proc/<pid>/cgroup, and where its
// hierarchies are mounted from /proc/self/mountinfo.
func Load(pid int) (*Cgroup, error) {
	m, err := readMachineMounts()
	if err != nil {
		return nil, err
	}
	procPath := fmt.Sprintf("/proc/%d/cgroup", pid)
	procData, err := os.ReadFile(procPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procPath, err)
	}
	return loadCgroup(pid, string(procData), m.infos, m.v2)
}

// machineMounts is where the machine's cgroup hierarchies are mounted, and
// whether it is cgroup v2 only (cgroup2 mounted at cgroupRoot).
type machineMounts struct {
	infos []*mountinfo.Info
	v2    bool
}

func readMachineMounts() (machineMounts, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return machineMounts{}, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return machineMounts{}, fmt.Errorf("read the mount table: %w", err)
	}
	return machineMounts{infos: infos, v2: st.Type == unix.CGROUP2_SUPER_MAGIC}, nil
}

// loadCgroup resolves pid's cgroup from the text of /proc/<pid>/cgroup and
// the machine's mounts (those of other types are ignored).
func loadCgroup(pid int, procCgroup string, infos []*mountinfo.Info, v2 bool) (*Cgroup, error) {
	paths, err := parseProcCgroup(procCgroup)
	if err != nil {
		return nil, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	mounts := cgroupMounts(infos)
	c := &Cgroup{pid: pid, version: 1}
	if v2 {
		c.version = 2
		p, ok := paths[""]
		if !ok {
			return nil, fmt.Errorf("cgroup of pid %d: no cgroup v2 entry in /proc/%d/cgroup", pid, pid)
		}
		var mount *cgroupMount
		for i := range mounts {
			m := &mounts[i]
			if m.v2 && (mount == nil || m.point == cgroupRoot) {
				mount = m
			}
		}
		if mount == nil {
			return nil, fmt.Errorf("cgroup of pid %d: cgroup2 is not mounted", pid)
		}
		c.unified = mount.join(p)
		return c, nil
	}
	c.dirs = make(map[string]string)
	for _, ctrl := range v1Controllers {
		p, ok := paths[ctrl]
		if !ok {
			continue
		}
		for _, m := range mounts {
			if !m.v2 && m.has(ctrl) {
				c.dirs[ctrl] = m.join(p)
				break
			}
		}
	}
	if len(c.dirs) == 0 {
		return nil, fmt.Errorf("cgroup of pid %d: none of the controllers %v is mounted", pid, v1Controllers)
	}
	return c, nil
}

// Version is 1 or 2.
func (c *Cgroup) Version() int { return c.version }

// parseProcCgroup parses /proc/<pid>/cgroup: "hierarchy-id:controllers:path"
// lines. It maps each v1 controller (and "name=..." hierarchy) to its path,
// and "" to the v2 path.
func parseProcCgroup(data string) (map[string]string, error) {
	paths := make(map[string]string)
	for line := range strings.Lines(data) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			return nil, fmt.Errorf("parse cgroup line %q: want hierarchy-id:controllers:path", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			if ctrl != "" {
				paths[ctrl] = parts[2]
			}
		}
	}
	return paths, nil
}

// cgroupMount is a cgroup or cgroup2 mount.
type cgroupMount struct {
	root  string   // the cgroup path mounted (field 4), "/" unless bind-mounted or namespaced
	point string   // where it is mounted
	v2    bool     // cgroup2
	opts  []string // super options: for v1, the controllers among them
}

func (m *cgroupMount) has(ctrl string) bool {
	for _, o := range m.opts {
		if o == ctrl {
			return true
		}
	}
	return false
}

// join gives the directory of the cgroup path p under this mount.
func (m *cgroupMount) join(p string) string {
	if m.root != "/" {
		if rel, ok := strings.CutPrefix(p, m.root); ok && (rel == "" || rel[0] == '/') {
			p = rel
		}
	}
	return filepath.Join(m.point, p)
}

// cgroupMounts keeps the cgroup and cgroup2 mounts.
func cgroupMounts(infos []*mountinfo.Info) []cgroupMount {
	var mounts []cgroupMount
	for _, m := range infos {
		if m.FSType != "cgroup" && m.FSType != "cgroup2" {
			continue
		}
		mounts = append(mounts, cgroupMount{
			root:  m.Root,
			point: m.Mountpoint,
			v2:    m.FSType == "cgroup2",
			opts:  strings.Split(m.VFSOptions, ","),
		})
	}
	return mounts
}

// Helpers for reading cgroup files.

func cgroupPathExists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// missing: the file is not there (no such controller or kernel feature), or
// the cgroup went away while being read (ENODEV from an open kernfs file).
func cgroupFileMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// readFile reads a cgroup file.
func readCgroupFile(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(data), nil
}

// readUint reads a file holding one number; "max" reads as ifMax.
func readCgroupUint(dir, name string, ifMax uint64) (uint64, error) {
	s, err := readCgroupFile(dir, name)
	if err != nil {
		return 0, err
	}
	return parseCgroupUint(filepath.Join(dir, name), strings.TrimSpace(s), ifMax)
}

func parseCgroupUint(what, s string, ifMax uint64) (uint64, error) {
	if s == "max" {
		return ifMax, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 reports -1 as "no limit" in a few files.
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %s: %w", what, err)
	}
	return n, nil
}

// eachKV calls fn for each "key value" line of a flat keyed file
// (memory.stat, cpu.stat, memory.events...). Lines that are not a key and a
// number are skipped.
func eachStat(data string, fn func(key string, value uint64)) {
	for line := range strings.Lines(data) {
		key, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			continue
		}
		fn(key, n)
	}
}

// kvValue returns the value of key in a flat keyed file.
func statValue(data, key string) (uint64, bool) {
	var v uint64
	found := false
	eachStat(data, func(k string, n uint64) {
		if k == key {
			v, found = n, true
		}
	})
	return v, found
}

// hugePageSizes are the huge page sizes of the machine as cgroup file names
// spell them ("2MB", "1GB"), from /sys/kernel/mm/hugepages.
var hugePageSizes = sync.OnceValue(func() []string {
	entries, err := os.ReadDir("/sys/kernel/mm/hugepages")
	if err != nil {
		return nil
	}
	var sizes []string
	for _, e := range entries {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(kb, "kB"), 10, 64)
		if err != nil {
			continue
		}
		sizes = append(sizes, hugePageName(n<<10))
	}
	return sizes
})

// hugePageName spells a page size the way the hugetlb controller names its
// files (the kernel's mem_fmt).
func hugePageName(size uint64) string {
	switch {
	case size >= 1<<30:
		return fmt.Sprintf("%dGB", size>>30)
	case size >= 1<<20:
		return fmt.Sprintf("%dMB", size>>20)
	default:
		return fmt.Sprintf("%dKB", size>>10)
	}
}
