package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// A pod's cgroup (a sandbox's: CRI's cgroup_parent) is named by path, not
// found from a pid: the shim makes it if it is missing, puts the pod's own
// process into a leaf of it, reads its metrics and sets its resources.

// LoadPath returns the cgroup at path, as an OCI spec's cgroupsPath or CRI's
// cgroup_parent name it: a cgroupfs path ("/kubepods/burstable/pod1") or a
// systemd slice ("kubepods-burstable-pod1.slice", expanded to its path as
// systemd nests slices). The cgroup need not exist yet (see Create).
func LoadPath(path string) (*Cgroup, error) {
	m, err := readMachineMounts()
	if err != nil {
		return nil, err
	}
	return loadPath(path, m.infos, m.v2)
}

func loadPath(path string, infos []*mountinfo.Info, v2 bool) (*Cgroup, error) {
	p, err := CgroupfsPath(path)
	if err != nil {
		return nil, err
	}
	var proc strings.Builder
	if v2 {
		fmt.Fprintf(&proc, "0::%s\n", p)
	} else {
		for i, ctrl := range v1Controllers {
			fmt.Fprintf(&proc, "%d:%s:%s\n", i+1, ctrl, p)
		}
	}
	c, err := loadCgroup(0, proc.String(), infos, v2)
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return c, nil
}

// CgroupfsPath is the cgroup path that path names (see LoadPath): absolute,
// cleaned, never above the hierarchy's root.
func CgroupfsPath(path string) (string, error) {
	if path == "" || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("cgroup path %q: empty or holds a NUL", path)
	}
	if !strings.Contains(path, "/") && strings.HasSuffix(path, ".slice") {
		return expandSlice(path)
	}
	return filepath.Clean("/" + path), nil
}

// expandSlice nests a systemd slice under its parents: "a-b-c.slice" is
// /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, error) {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "" || name == "-" {
		return "/", nil
	}
	if strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid systemd slice %q", slice)
	}
	var path, prefix strings.Builder
	for i, part := range strings.Split(name, "-") {
		if i > 0 {
			prefix.WriteByte('-')
		}
		prefix.WriteString(part)
		path.WriteString("/" + prefix.String() + ".slice")
	}
	return path.String(), nil
}

// Child is the cgroup name under c.
func (c *Cgroup) Child(name string) (*Cgroup, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroup name %q: not a single path element", name)
	}
	child := &Cgroup{version: c.version}
	if c.version == 2 {
		child.unified = filepath.Join(c.unified, name)
		return child, nil
	}
	child.dirs = make(map[string]string, len(c.dirs))
	for ctrl, dir := range c.dirs {
		child.dirs[ctrl] = filepath.Join(dir, name)
	}
	return child, nil
}

// Directories lists the cgroup's directories, each once (v1 controllers
// mounted together share one).
func (c *Cgroup) Directories() []string {
	if c.version == 2 {
		return []string{c.unified}
	}
	var dirs []string
	for _, dir := range c.dirs {
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// Create makes the cgroup's directories and the missing ones above them, and
// returns those it made, parents first, for RemoveDirs. On cgroup v2 the
// parent of each one it makes enables its controllers for it first.
func (c *Cgroup) Create() (made []string, err error) {
	for _, dir := range c.Directories() {
		var missing []string
		for d := dir; !cgroupPathExists(d); d = filepath.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			if c.version == 2 {
				if err := enableControllers(filepath.Dir(missing[i])); err != nil {
					return nil, errors.Join(err, RemoveDirs(made))
				}
			}
			if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, errors.Join(fmt.Errorf("create cgroup %s: %w", missing[i], err), RemoveDirs(made))
			}
			made = append(made, missing[i])
		}
	}
	return made, nil
}

// enableControllers enables for dir's children every controller dir has
// (its cgroup.controllers, written to its cgroup.subtree_control), as runc
// does on its way down to a container's cgroup: a cgroup v2 directory has
// the files of a controller (memory.max, cpu.max, pids.current...) only if
// its parent enables it. A parent the shim made gets them from this too,
// so a pod's cgroup made under a path nobody made before can be limited
// and measured. (A parent that holds processes itself, other than the
// root, cannot enable controllers: the kernel refuses, and so does this.)
func enableControllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("controllers of cgroup %s: %w", dir, err)
	}
	var enable []string
	for _, ctrl := range strings.Fields(string(avail)) {
		enable = append(enable, "+"+ctrl)
	}
	if len(enable) == 0 {
		return nil
	}
	if err := writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(enable, " ")); err != nil {
		return fmt.Errorf("enable controllers %s for the children of cgroup %s: %w", strings.Join(enable, " "), dir, err)
	}
	return nil
}

// RemoveDirs removes cgroup directories made by Create, the last made first,
// once nothing is left in them. Those already gone are fine.
func RemoveDirs(made []string) error {
	var errs []error
	for i := len(made) - 1; i >= 0; i-- {
		if err := unix.Rmdir(made[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", made[i], err))
		}
	}
	return errors.Join(errs...)
}

// AddProc moves pid into the cgroup.
func (c *Cgroup) AddProc(pid int) error {
	for _, dir := range c.Directories() {
		if err := writeCgroupFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("move pid %d into cgroup: %w", pid, err)
		}
	}
	return nil
}

// OpenTasks opens the tasks file of each of a v1 cgroup's directories for
// writing. A thread that writes "0" to them moves itself, and only itself,
// into the cgroup, and the kernel takes no cgroup-wide lock for that; moving
// a process by pid (AddProc) takes it, and its first taker after a quiet
// spell waits for an RCU grace period (4-20 ms). The files are the caller's
// to close.
func (c *Cgroup) OpenTasks() ([]*os.File, error) {
	if c.version != 1 {
		return nil, errors.New("tasks files are cgroup v1's")
	}
	var files []*os.File
	for _, dir := range c.Directories() {
		f, err := os.OpenFile(filepath.Join(dir, "tasks"), os.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("open the tasks file of cgroup %s: %w", dir, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// Resources are the limits the shim sets on a pod's cgroup (CRI's
// LinuxContainerResources, pod-wide). A zero field is left as it is.
type Resources struct {
	MemoryLimit int64  // bytes
	CPUShares   uint64 // v1 cpu.shares (v2: converted to cpu.weight)
	CPUQuota    int64  // microseconds per period; -1: no limit
	CPUPeriod   uint64 // microseconds
}

// Update sets the cgroup's limits.
func (c *Cgroup) Update(r Resources) error {
	var writes [][2]string // file, value
	if c.version == 2 {
		dir := c.unified
		if r.MemoryLimit > 0 {
			writes = append(writes, [2]string{filepath.Join(dir, "memory.max"), strconv.FormatInt(r.MemoryLimit, 10)})
		}
		if r.CPUShares > 0 {
			writes = append(writes, [2]string{filepath.Join(dir, "cpu.weight"), strconv.FormatUint(sharesToWeight(r.CPUShares), 10)})
		}
		if r.CPUQuota != 0 || r.CPUPeriod != 0 {
			quota := "max"
			if r.CPUQuota > 0 {
				quota = strconv.FormatInt(r.CPUQuota, 10)
			}
			period := r.CPUPeriod
			if period == 0 {
				period = 100000
			}
			writes = append(writes, [2]string{filepath.Join(dir, "cpu.max"), quota + " " + strconv.FormatUint(period, 10)})
		}
	} else {
		mem, cpu := c.dirs["memory"], c.dirs["cpu"]
		if r.MemoryLimit > 0 && mem != "" {
			writes = append(writes, [2]string{filepath.Join(mem, "memory.limit_in_bytes"), strconv.FormatInt(r.MemoryLimit, 10)})
		}
		if cpu != "" {
			if r.CPUShares > 0 {
				writes = append(writes, [2]string{filepath.Join(cpu, "cpu.shares"), strconv.FormatUint(r.CPUShares, 10)})
			}
			// The period first: a quota is checked against it.
			if r.CPUPeriod > 0 {
				writes = append(writes, [2]string{filepath.Join(cpu, "cpu.cfs_period_us"), strconv.FormatUint(r.CPUPeriod, 10)})
			}
			if r.CPUQuota != 0 {
				writes = append(writes, [2]string{filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.FormatInt(r.CPUQuota, 10)})
			}
		}
	}
	for _, w := range writes {
		if err := writeCgroupFile(w[0], w[1]); err != nil {
			return err
		}
	}
	return nil
}

// sharesToWeight converts cpu.shares [2, 262144] to cpu.weight [1, 10000],
// as runc does.
func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}
