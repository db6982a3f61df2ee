package cgroup

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
)

// A process moved into a cgroup by pid (written to a cgroup.procs) is moved
// under a lock of the whole kernel (cgroup_threadgroup_rwsem), on v1 and v2
// alike. The first taker of that lock after a quiet spell waits for an RCU
// grace period before it moves anything: 4-20 ms on our machines, whatever
// the cgroup. A taker within a grace period or so of the last one does not
// wait. runc moves a container's first process that way, late in its create.
//
// WarmMigrationLock takes the lock now and lets a goroutine do the waiting:
// it writes the shim's own pid to the cgroup.procs of the cgroup the shim is
// in (read just before), which moves nothing. The grace period then runs
// while the shim prepares the container and runc starts up, and runc's move
// finds it passed. Where the write is refused (no right to the shim's
// cgroup), nothing is gained and nothing else happens.
func WarmMigrationLock() {
	if !warming.CompareAndSwap(false, true) {
		return // one in flight warms it for all
	}
	go func() {
		defer warming.Store(false)
		if err := moveSelfInPlace(); err != nil {
			slog.Debug("cannot warm the kernel's cgroup migration lock", "error", err)
		}
	}()
}

// warming is set while a WarmMigrationLock write is in flight.
var warming atomic.Bool

// cgroupFS is the machine's cgroup mounts, read once: the shim's own cgroup
// is read at each use, where its hierarchies are mounted is not.
var cgroupFS = sync.OnceValues(readMachineMounts)

// moveSelfInPlace writes the shim's pid to the cgroup.procs of its own
// cgroup (in one hierarchy on v1: the lock is the kernel's, not a
// hierarchy's).
func moveSelfInPlace() error {
	fsys, err := cgroupFS()
	if err != nil {
		return err
	}
	pid := os.Getpid()
	procData, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	c, err := loadCgroup(pid, string(procData), fsys.infos, fsys.v2)
	if err != nil {
		return err
	}
	return writeCgroupFile(filepath.Join(c.Directories()[0], "cgroup.procs"), strconv.Itoa(pid))
}
