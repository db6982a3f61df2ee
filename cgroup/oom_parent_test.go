package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeScope is a fake parent cgroup (a slice) holding a fake container cgroup (a scope), both with memory.events,
// and a Cgroup watching the container's.
type fakeScope struct {
	parent, dir string
	c           *Cgroup
	calls       atomic.Int32
}

func newFakeScope(t *testing.T, parentKills int, parentHasEvents bool) *fakeScope {
	t.Helper()
	f := &fakeScope{parent: t.TempDir()}
	f.dir = filepath.Join(f.parent, "podv2-x.scope")
	if parentHasEvents {
		writeCgroupFiles(t, f.parent, map[string]string{"memory.events": memoryEvents(parentKills, parentKills)})
	}
	writeCgroupFiles(t, f.dir, map[string]string{"memory.events": memoryEvents(0, 0)})
	f.c = &Cgroup{pid: 1, version: 2, unified: f.dir}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := f.c.WatchOOM(ctx, func() { f.calls.Add(1) }); err != nil {
		t.Fatal(err)
	}
	return f
}

// watch is the running v2 watch.
func (f *fakeScope) watch() *v2Watch {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return f.c.oom.(*v2Watch)
}

func (f *fakeScope) setParentKills(t *testing.T, n int) {
	rewriteFile(t, filepath.Join(f.parent, "memory.events"), memoryEvents(n, n))
}

// remove removes the container's cgroup as systemd does an emptied scope's.
func (f *fakeScope) remove(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
}

// The systemd race: the scope is gone before its counter was read after the kill. The parent counted the kill,
// and FlushOOM reports it once, for an init that died of SIGKILL.
func TestOOMV2ParentCountsKillOfRemovedCgroup(t *testing.T) {
	f := newFakeScope(t, 5, true)
	f.remove(t)
	f.setParentKills(t, 6)
	f.c.FlushOOM(true)
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("after FlushOOM(killed): %d calls, want 1", got)
	}
	f.c.FlushOOM(true)
	waitCalls(t, &f.calls, 1)
}

// An init that did not die of SIGKILL was no OOM victim: the parent's rise is someone else's.
func TestOOMV2ParentRiseIgnoredWithoutSIGKILL(t *testing.T) {
	f := newFakeScope(t, 5, true)
	f.remove(t)
	f.setParentKills(t, 6)
	f.c.FlushOOM(false)
	waitCalls(t, &f.calls, 0)
}

// A kill in a sibling while the cgroup still exists moves the baseline: it is not taken for this cgroup's later.
func TestOOMV2ParentSiblingKillMovesBaseline(t *testing.T) {
	f := newFakeScope(t, 5, true)
	f.setParentKills(t, 6)
	w := f.watch()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		base := w.parent.base
		w.mu.Unlock()
		if base == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("parent baseline %d after a sibling's kill, want 6", base)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.remove(t)
	f.c.FlushOOM(true)
	waitCalls(t, &f.calls, 0)
}

// A kill the cgroup's own counter showed is reported once, not again from the parent once the cgroup is gone.
func TestOOMV2ParentNoDoubleCount(t *testing.T) {
	f := newFakeScope(t, 5, true)
	rewriteFile(t, filepath.Join(f.dir, "memory.events"), memoryEvents(1, 1))
	f.setParentKills(t, 6)
	waitCalls(t, &f.calls, 1)
	f.remove(t)
	f.c.FlushOOM(true)
	waitCalls(t, &f.calls, 1)
}

// Without memory.events in the parent (the root cgroup) nothing is guessed.
func TestOOMV2NoParentCounter(t *testing.T) {
	f := newFakeScope(t, 0, false)
	if w := f.watch(); w.parent != nil {
		t.Fatalf("parent counter %+v for a parent without memory.events", w.parent)
	}
	f.remove(t)
	f.c.FlushOOM(true)
	waitCalls(t, &f.calls, 0)
}

// wrap rereads until the parent's counter holds still around the cgroup's reading, and gives up on a parent that
// never does, taking its later value.
func TestOOMV2ParentWrap(t *testing.T) {
	parentValues := []uint64{1, 2, 2, 2}
	p := &parentCounter{read: func() (uint64, error) {
		v := parentValues[0]
		if len(parentValues) > 1 {
			parentValues = parentValues[1:]
		}
		return v, nil
	}}
	owns := 0
	read := p.wrap(func() (uint64, error) { owns++; return 7, nil })
	if n, err := read(); n != 7 || err != nil || p.base != 2 || p.own != 7 || owns != 2 {
		t.Fatalf("read %d %v, baseline %d/%d after %d own readings; want 7, baseline 2/7 after 2", n, err, p.base, p.own, owns)
	}

	// A kill may be under way: the baseline stays where it was, rather than pass a kill own did not see.
	moving := uint64(10)
	p = &parentCounter{base: 4, own: 1, read: func() (uint64, error) { moving++; return moving, nil }}
	owns = 0
	read = p.wrap(func() (uint64, error) { owns++; return 1, nil })
	if _, err := read(); err != nil || owns != parentReadTries || p.base != 4 || p.own != 1 {
		t.Fatalf("ever-moving parent: %d own readings, baseline %d/%d, err %v; want %d, 4/1", owns, p.base, p.own, err, parentReadTries)
	}

	gone := errors.New("gone")
	p = &parentCounter{base: 3, read: func() (uint64, error) { return 0, gone }}
	read = p.wrap(func() (uint64, error) { return 4, nil })
	if n, err := read(); n != 4 || err != nil || p.base != 3 {
		t.Fatalf("parent unreadable: read %d %v, base %d; want 4, base kept at 3", n, err, p.base)
	}
}

// report counts the parent's kills since the baseline less those the cgroup's own readings showed.
func TestOOMV2UnreadKillsReport(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		base, own, seen, now uint64
		want                 int32
	}{
		{"no kill since", 5, 0, 0, 5, 0},
		{"one kill unread", 5, 0, 0, 6, 1},
		{"the kill was read and reported", 5, 0, 1, 6, 0},
		{"one read, one more unread", 5, 0, 1, 7, 1},
		{"two unread: one report, for init", 5, 0, 0, 7, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			u := &unreadKills{
				parent: &parentCounter{read: func() (uint64, error) { return tc.now, nil }},
				base:   tc.base, own: tc.own, seen: tc.seen,
				onOOM: func() { calls.Add(1) },
			}
			u.report()
			if got := calls.Load(); got != tc.want {
				t.Errorf("%d calls, want %d", got, tc.want)
			}
		})
	}
}
