package cgroup

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WatchOOM starts watching the cgroup for OOM kills and returns. It calls
// onOOM once per process the kernel kills for lack of memory in the cgroup,
// in order, never concurrently, from the watch's goroutine (or from the
// caller of FlushOOM). Watching
// stops when ctx is done or when the cgroup is removed; after that onOOM is
// not called again. A Cgroup has at most one watch at a time.
//
// Start it right after the runtime's create, before its start: the
// container's process is then still held in the runtime's init, so no kill
// can be missed, and kills counted before the watch began are not reported.
//
// Kills, not OOM events, are counted:
//   - cgroup v2: inotify on memory.events, one onOOM per increase of oom_kill
//     (the oom count also rises when the kernel finds nothing to kill).
//   - cgroup v1: an eventfd registered on memory.oom_control through
//     cgroup.event_control wakes the watch; it then reports the increase of
//     oom_control's oom_kill counter (Linux 4.13 and later). The kernel
//     signals an OOM before it picks and counts its victim, so the watch
//     rereads the counter for up to about 0.6 s; an OOM that killed nothing
//     in this cgroup (oom_kill_disable, a victim already exiting, an OOM of a
//     parent cgroup that killed in a sibling: the kernel signals every
//     descendant) is not reported. On kernels without the counter each OOM
//     event is one onOOM call.
//
// onOOM must return promptly and must not call FlushOOM.
func (c *Cgroup) WatchOOM(ctx context.Context, onOOM func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.oom != nil {
		return fmt.Errorf("watch oom of the cgroup of pid %d: already watching", c.pid)
	}
	var (
		w   oomWatch
		err error
	)
	if c.version == 2 {
		w, err = watchCounter(ctx, c.unified, "memory.events", "oom_kill", onOOM, c.forget)
	} else {
		dir := c.ctrlDir("memory")
		if dir == "" {
			return fmt.Errorf("watch oom of the cgroup of pid %d: no memory controller", c.pid)
		}
		w, err = watchV1(ctx, dir, onOOM, c.forget)
	}
	if err != nil {
		return err
	}
	c.oom = w
	return nil
}

// FlushOOM reports at once, through the running watch's onOOM, every kill
// the cgroup's counter shows that the watch has not reported yet. The kernel
// counts a kill before it sends SIGKILL, so calling FlushOOM after reaping
// the container's init and before publishing its exit puts an OOM before the
// exit it caused, and catches kills that came without an OOM event (a
// system-wide OOM, on v1). It does nothing without a running watch, or on a
// v1 kernel without the oom_kill counter.
//
// killed says the init died of SIGKILL. On cgroup v2 a cgroup removed before
// the watch could read its last kill (systemd removes an emptied scope at
// once) then has that kill taken from its parent's counter: see
// oom_parent.go.
func (c *Cgroup) FlushOOM(killed bool) {
	c.mu.Lock()
	w := c.oom
	c.mu.Unlock()
	if w != nil {
		w.flush()
	}
	c.mu.Lock()
	u := c.unread
	c.unread = nil
	c.mu.Unlock()
	if u != nil && killed {
		u.report()
	}
}

// forget drops w as the cgroup's watch once it has stopped, keeping the
// kills it could not read.
func (c *Cgroup) forget(w oomWatch) {
	c.mu.Lock()
	if c.oom == w {
		c.oom = nil
		c.unread = w.unread()
	}
	c.mu.Unlock()
}

// oomWatch is a running WatchOOM.
type oomWatch interface {
	flush()
	stopped() <-chan struct{} // closed when the watch has stopped
	unread() *unreadKills     // once stopped: kills the cgroup's removal kept from it, or nil
}

// killCounter turns a kill counter that only grows into onOOM calls.
type killCounter struct {
	mu     sync.Mutex             // serialises reading the counter and calling onOOM
	read   func() (uint64, error) // reads the counter; nil if the kernel has none
	seen   uint64                 // the counter's value up to which kills are reported
	closed bool                   // the watch stopped: report nothing more
	onOOM  func()
}

// check reports the kills counted since the last check, and returns how
// many it reported.
func (k *killCounter) check() (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.read == nil {
		return 0, nil
	}
	n, err := k.read()
	if err != nil {
		return 0, err
	}
	reported := 0
	for ; k.seen < n; k.seen++ {
		k.onOOM()
		reported++
	}
	return reported, nil
}

func (k *killCounter) flush() { _, _ = k.check() }

func (k *killCounter) close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
}

// Cgroup v1: eventfd on memory.oom_control, one goroutine per watch, parked
// in the runtime poller while it waits.

type v1Watch struct {
	killCounter
	ctx       context.Context
	dir       string   // the memory cgroup
	efd       *os.File // the eventfd, non-blocking, so reads go through the poller
	stopAfter func() bool
	forget    func(oomWatch)
	done      chan struct{}
}

// v1CounterWaits are the pauses before each reading of oom_kill after an
// OOM event, while the kernel picks its victim.
var v1CounterWaits = []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}

func watchV1(ctx context.Context, dir string, onOOM func(), forget func(oomWatch)) (*v1Watch, error) {
	w := &v1Watch{ctx: ctx, dir: dir, forget: forget, done: make(chan struct{})}
	w.onOOM = onOOM
	// Take the baseline first: a kill between it and the registration is
	// caught by the check below.
	s, err := readCgroupFile(dir, "memory.oom_control")
	if err != nil {
		return nil, err
	}
	if n, ok := statValue(s, "oom_kill"); ok {
		w.seen = n
		w.read = func() (uint64, error) {
			s, err := readCgroupFile(dir, "memory.oom_control")
			if err != nil {
				return 0, err
			}
			n, _ := statValue(s, "oom_kill")
			return n, nil
		}
	}

	ocPath := filepath.Join(dir, "memory.oom_control")
	oc, err := os.Open(ocPath)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ocPath, err)
	}
	defer oc.Close() // the registration does not need it open
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w.efd = os.NewFile(uintptr(efd), "oom eventfd")
	ecPath := filepath.Join(dir, "cgroup.event_control")
	if err := writeCgroupFile(ecPath, fmt.Sprintf("%d %d", efd, oc.Fd())); err != nil {
		w.efd.Close()
		return nil, err
	}
	if _, err := w.check(); err != nil {
		w.efd.Close()
		return nil, err
	}
	w.start()
	return w, nil
}

// start runs the watch on its registered eventfd.
func (w *v1Watch) start() {
	// Closing the eventfd wakes the goroutine, and makes the kernel drop
	// the registration.
	w.stopAfter = context.AfterFunc(w.ctx, func() { w.efd.Close() })
	go w.run()
}

func (w *v1Watch) stopped() <-chan struct{} { return w.done }

func (w *v1Watch) unread() *unreadKills { return nil }

func (w *v1Watch) run() {
	defer w.stop()
	var buf [8]byte
	for {
		if _, err := w.efd.Read(buf[:]); err != nil {
			return // closed: ctx is done
		}
		events := binary.NativeEndian.Uint64(buf[:])
		// The kernel also signals the eventfd when the cgroup is removed,
		// after its directory is gone.
		gone := !cgroupPathExists(filepath.Join(w.dir, "cgroup.event_control"))
		if gone {
			events--
		}
		if events > 0 {
			w.report(events)
		}
		if gone {
			return
		}
	}
}

// report handles OOM events: with the kill counter, it reports the kills
// counted, waiting a little for them; without, each event is an OOM.
func (w *v1Watch) report(events uint64) {
	if w.read == nil {
		w.mu.Lock()
		defer w.mu.Unlock()
		for ; events > 0 && !w.closed; events-- {
			w.onOOM()
		}
		return
	}
	reported := uint64(0)
	for _, d := range v1CounterWaits {
		if d > 0 {
			select {
			case <-time.After(d):
			case <-w.ctx.Done():
				return
			}
		}
		n, err := w.check()
		if err != nil {
			return // the cgroup is going away
		}
		if reported += uint64(n); reported >= events {
			return
		}
	}
}

func (w *v1Watch) stop() {
	w.stopAfter()
	w.efd.Close()
	w.close()
	w.forget(w)
	close(w.done)
}

// writeCgroupFile writes s to an existing cgroup file in one write.
func writeCgroupFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(s)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Cgroup v2: inotify on memory.events. One inotify instance and one
// goroutine serve every watch of the shim: inotify instances are few
// (fs.inotify.max_user_instances, 128 by default, for all of root's
// processes), and a pod may have many containers.

// watchCounter watches key of the flat keyed file dir/file, and calls onInc
// once per increase of its value, until ctx is done or dir is removed.
func watchCounter(ctx context.Context, dir, file, key string, onInc func(), forget func(oomWatch)) (*v2Watch, error) {
	n, err := sharedInotify()
	if err != nil {
		return nil, err
	}
	w := &v2Watch{n: n, name: filepath.Base(dir), dirWd: -1, fileWd: -1, parentWd: -1, forget: forget, done: make(chan struct{})}
	w.onOOM = onInc
	w.read = func() (uint64, error) {
		s, err := readCgroupFile(dir, file)
		if err != nil {
			return 0, err
		}
		v, _ := statValue(s, key)
		return v, nil
	}
	if w.parent = newParentCounter(dir, file, key); w.parent != nil {
		w.read = w.parent.wrap(w.read)
	}
	// Baseline first; the check after the watches are in place reports a
	// kill that came in between.
	if w.seen, err = w.read(); err != nil {
		return nil, err
	}
	w.mu.Lock() // stop may run at once, and reads stopAfter
	w.stopAfter = context.AfterFunc(ctx, w.stop)
	w.mu.Unlock()
	if err := n.add(w, dir, file); err != nil {
		w.stopAfter()
		return nil, err
	}
	if _, err := w.check(); err != nil {
		w.stopAfter()
		n.remove(w)
		return nil, err
	}
	return w, nil
}

type v2Watch struct {
	killCounter
	n             *inotifyHub
	name          string         // the cgroup directory's name in its parent
	dirWd, fileWd int32          // the parent directory's watch, the counter file's
	parent        *parentCounter // the parent's counter, nil if it has none
	parentWd      int32          // the watch of the parent's counter file
	cgroupGone    bool           // stopped because the cgroup went; guarded by mu
	stopAfter     func() bool
	forget        func(oomWatch)
	once          sync.Once
	done          chan struct{}
}

func (w *v2Watch) stopped() <-chan struct{} { return w.done }

// flush reads the counter; a cgroup found gone ends the watch. A stop under
// way (the hub saw the cgroup go) is over when flush returns, so that
// FlushOOM finds the kills it left unread.
func (w *v2Watch) flush() {
	if _, err := w.check(); cgroupFileMissing(err) {
		w.gone()
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		<-w.done
	}
}

// gone stops the watch of a cgroup that was removed.
func (w *v2Watch) gone() {
	w.mu.Lock()
	if !w.closed {
		w.cgroupGone = true
	}
	w.mu.Unlock()
	w.stop()
}

func (w *v2Watch) unread() *unreadKills {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.cgroupGone || w.parent == nil {
		return nil
	}
	return &unreadKills{dir: filepath.Join(w.parent.dir, w.name), parent: w.parent, base: w.parent.base, own: w.parent.own, seen: w.seen, onOOM: w.onOOM}
}

func (w *v2Watch) stop() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		after := w.stopAfter
		w.mu.Unlock()
		if after != nil {
			after()
		}
		w.n.remove(w)
		w.forget(w)
		close(w.done)
	})
}

// inotifyHub is the shared inotify instance.
type inotifyHub struct {
	fd   int      // for inotify_add_watch; never closed
	file *os.File // the same fd, non-blocking, read through the poller

	mu      sync.Mutex
	watches map[int32][]*v2Watch // watch descriptor -> the watches using it
}

var sharedInotify = sync.OnceValues(func() (*inotifyHub, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	n := &inotifyHub{fd: fd, file: os.NewFile(uintptr(fd), "inotify"), watches: make(map[int32][]*v2Watch)}
	go n.run()
	return n, nil
})

// add watches dir/file for changes, and dir's parent for dir's removal:
// kernfs sends no event on the removed directory or its files themselves.
// Watches of one inode share a descriptor; all of them use the same mask.
func (n *inotifyHub) add(w *v2Watch, dir, file string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// ctx may have ended already, and stop found nothing to remove.
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return fmt.Errorf("watch %s: %w", filepath.Join(dir, file), context.Canceled)
	}
	parent := filepath.Dir(dir)
	wd, err := unix.InotifyAddWatch(n.fd, parent, unix.IN_DELETE|unix.IN_ONLYDIR)
	if err != nil {
		return fmt.Errorf("inotify watch %s: %w", parent, err)
	}
	w.dirWd = int32(wd)
	n.watches[w.dirWd] = append(n.watches[w.dirWd], w)
	path := filepath.Join(dir, file)
	if wd, err = unix.InotifyAddWatch(n.fd, path, unix.IN_MODIFY); err != nil {
		n.removeLocked(w)
		return fmt.Errorf("inotify watch %s: %w", path, err)
	}
	w.fileWd = int32(wd)
	n.watches[w.fileWd] = append(n.watches[w.fileWd], w)
	if w.parent != nil {
		path := filepath.Join(w.parent.dir, file)
		if wd, err = unix.InotifyAddWatch(n.fd, path, unix.IN_MODIFY); err != nil {
			// Unwatched, the parent's baseline could go stale and a
			// sibling's kill pass for this cgroup's: count none from it.
			w.mu.Lock()
			w.parent = nil
			w.mu.Unlock()
			return nil
		}
		w.parentWd = int32(wd)
		n.watches[w.parentWd] = append(n.watches[w.parentWd], w)
	}
	return nil
}

func (n *inotifyHub) remove(w *v2Watch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removeLocked(w)
}

func (n *inotifyHub) removeLocked(w *v2Watch) {
	for _, wd := range []int32{w.dirWd, w.fileWd, w.parentWd} {
		ws, ok := n.watches[wd]
		if !ok {
			continue
		}
		ws = slices.DeleteFunc(ws, func(x *v2Watch) bool { return x == w })
		if len(ws) > 0 {
			n.watches[wd] = ws
			continue
		}
		delete(n.watches, wd)
		_, _ = unix.InotifyRmWatch(n.fd, uint32(wd)) // fails if the inode is gone already
	}
}

func (n *inotifyHub) run() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		nr, err := n.file.Read(buf)
		if err != nil {
			// Only a closed fd fails, and it is never closed: stop the
			// watches rather than leave them silent.
			n.mu.Lock()
			var all []*v2Watch
			for _, ws := range n.watches {
				all = append(all, ws...)
			}
			n.mu.Unlock()
			for _, w := range all {
				w.stop()
			}
			return
		}
		check, gone := n.dispatch(buf[:nr])
		for _, w := range check {
			if _, err := w.check(); cgroupFileMissing(err) {
				gone = append(gone, w)
			}
		}
		for _, w := range gone {
			w.gone()
		}
	}
}

// dispatch sorts a read of inotify events into the watches whose counter
// may have changed, and those whose cgroup is gone.
func (n *inotifyHub) dispatch(buf []byte) (check, gone []*v2Watch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(buf[0:]))
		mask := binary.NativeEndian.Uint32(buf[4:])
		size := int(binary.NativeEndian.Uint32(buf[12:]))
		if unix.SizeofInotifyEvent+size > len(buf) {
			break
		}
		name := strings.TrimRight(string(buf[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+size]), "\x00")
		buf = buf[unix.SizeofInotifyEvent+size:]
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0: // events lost: check everything
			for _, ws := range n.watches {
				check = append(check, ws...)
			}
		case mask&unix.IN_IGNORED != 0: // the kernel dropped the watch (unmount)
			gone = append(gone, n.watches[wd]...)
			delete(n.watches, wd)
		case mask&unix.IN_DELETE != 0:
			for _, w := range n.watches[wd] {
				if w.dirWd == wd && w.name == name {
					gone = append(gone, w)
				}
			}
		case mask&unix.IN_MODIFY != 0:
			for _, w := range n.watches[wd] {
				if w.fileWd == wd || w.parentWd == wd {
					check = append(check, w)
				}
			}
		}
	}
	return check, gone
}
