package cgroup

import (
	"log/slog"
	"path/filepath"
)

// Kills the cgroup itself can no longer show (cgroup v2).
//
// Under runc's systemd driver a container's cgroup is a scope unit's, and
// systemd removes it as soon as its last process exits: often before the
// shim has read the oom_kill counter of memory.events that counted the kill
// of that process (the kernel's notice of the change is deferred, and comes
// when the file is gone, or not at all). The kill is still counted in the
// parent cgroup's memory.events, which counts the kills of its whole
// subtree. So each reading of the cgroup's counter also takes the parent's
// (parentCounter.wrap), the parent's file is watched too (so that kills of
// sibling cgroups move the baseline while the cgroup still exists), and a
// cgroup removed before its final reading leaves the rise of the parent's
// counter since then, less the kills its own readings showed since
// (unreadKills), which FlushOOM reports when the container's init died of
// SIGKILL. A kill in a sibling cgroup since the last baseline (a few
// milliseconds, unless the subtree's counters never hold still), together
// with a SIGKILL of this init that was not an OOM kill, would be taken for
// this one's.

// parentCounter is the kill counter of a cgroup's parent.
type parentCounter struct {
	dir  string                 // the parent cgroup
	read func() (uint64, error) // its counter
	// The last reading of the cgroup's counter (own) that no kill in the
	// subtree overlapped, and the parent's counter then (base). Guarded by
	// the watch's mu.
	base, own uint64
}

// newParentCounter returns the counter key of file in dir's parent, or nil
// when the parent has no such file (the root cgroup has no memory.events).
func newParentCounter(dir, file, key string) *parentCounter {
	parent := filepath.Dir(dir)
	if parent == dir || !cgroupPathExists(filepath.Join(parent, file)) {
		return nil
	}
	return &parentCounter{dir: parent, read: func() (uint64, error) {
		s, err := readCgroupFile(parent, file)
		if err != nil {
			return 0, err
		}
		v, _ := statValue(s, key)
		return v, nil
	}}
}

// parentReadTries bounds the rereadings of a cgroup's counter while its
// parent's keeps moving.
const parentReadTries = 3

// wrap returns a reading of the cgroup's own counter (own) that also takes
// the parent's: when the parent's value is the same before and after, the
// two make the new baseline; else own is read again, a few times, and a
// reading that never settles leaves the last baseline as it was.
func (p *parentCounter) wrap(own func() (uint64, error)) func() (uint64, error) {
	return func() (uint64, error) {
		var n uint64
		for i := 0; i < parentReadTries; i++ {
			before, perr := p.read()
			var err error
			if n, err = own(); err != nil {
				return 0, err
			}
			after, aerr := p.read()
			if perr != nil || aerr != nil {
				return n, nil // the parent is going too
			}
			if before == after {
				p.base, p.own = after, n
				return n, nil
			}
		}
		return n, nil
	}
}

// unreadKills are the kills a removed cgroup may have had after its last
// reading, reported through onOOM.
type unreadKills struct {
	dir       string // the removed cgroup
	parent    *parentCounter
	base, own uint64 // the parent's baseline, and the cgroup's counter then
	seen      uint64 // the cgroup's counter as last read and reported
	onOOM     func()
}

// report calls onOOM once if the parent counted more kills since the
// baseline than the cgroup's own readings did: the one process whose kill
// can be told apart is the init whose exit is being handled.
func (u *unreadKills) report() {
	n, err := u.parent.read()
	if err == nil && n > u.base && n-u.base > u.seen-u.own {
		slog.Debug("OOM kill counted from the parent cgroup: the cgroup was removed before its own counter was read",
			"cgroup", u.dir, "parent", u.parent.dir)
		u.onOOM()
	}
}
