package cgroup

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeV1Watch runs the v1 event loop on an eventfd the test signals, over a
// fake memory cgroup directory.
func fakeV1Watch(t *testing.T, ctx context.Context, withCounter bool, onOOM func()) (*v1Watch, string, func(uint64)) {
	t.Helper()
	dir := t.TempDir()
	writeCgroupFiles(t, dir, map[string]string{
		"cgroup.event_control": "",
		"memory.oom_control":   "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
	})
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	w := &v1Watch{ctx: ctx, dir: dir, efd: os.NewFile(uintptr(fd), "eventfd"), forget: func(oomWatch) {}, done: make(chan struct{})}
	w.onOOM = onOOM
	if withCounter {
		w.read = func() (uint64, error) {
			s, err := readCgroupFile(dir, "memory.oom_control")
			if err != nil {
				return 0, err
			}
			n, _ := statValue(s, "oom_kill")
			return n, nil
		}
	}
	w.start()
	signal := func(n uint64) {
		var buf [8]byte
		binary.NativeEndian.PutUint64(buf[:], n)
		if _, err := unix.Write(fd, buf[:]); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Error("watch did not stop")
		}
	})
	return w, dir, signal
}

// waitCount waits until *n reaches want, and checks it goes no further.
func waitCalls(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := n.Load(); got != want {
		t.Fatalf("onOOM called %d times, want %d", got, want)
	}
}

func TestOOMV1EventsWithoutCounter(t *testing.T) {
	var n atomic.Int32
	w, dir, signal := fakeV1Watch(t, context.Background(), false, func() { n.Add(1) })
	signal(2) // two OOM events in one read
	waitCalls(t, &n, 2)
	signal(1)
	waitCalls(t, &n, 3)
	// Removal: the directory goes, then the kernel signals once more.
	if err := os.Remove(filepath.Join(dir, "cgroup.event_control")); err != nil {
		t.Fatal(err)
	}
	signal(1)
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop when the cgroup went")
	}
	if got := n.Load(); got != 3 {
		t.Errorf("removal reported as an OOM: %d calls", got)
	}
}

func TestOOMV1EventsWithCounter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int32
	w, dir, signal := fakeV1Watch(t, ctx, true, func() { n.Add(1) })
	setKills := func(k int) {
		writeCgroupFiles(t, dir, map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill " + strconv.Itoa(k) + "\n"})
	}

	setKills(1)
	signal(1)
	waitCalls(t, &n, 1)

	// An OOM that killed nothing here is not reported.
	signal(1)
	time.Sleep(700 * time.Millisecond)
	waitCalls(t, &n, 1)

	// The kernel counts the kills a little after it signals the OOM.
	signal(1)
	time.Sleep(30 * time.Millisecond)
	setKills(3)
	waitCalls(t, &n, 3)

	// A kill without an event (a system OOM) is found by a flush.
	setKills(4)
	w.flush()
	if got := n.Load(); got != 4 {
		t.Errorf("after flush: %d calls, want 4", got)
	}

	cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop on cancel")
	}
	setKills(5)
	w.flush()
	if got := n.Load(); got != 4 {
		t.Errorf("stopped watch reported: %d calls", got)
	}
}

// rewrite replaces a fake cgroup file's content.
func rewriteFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func memoryEvents(oom, kill int) string {
	return "low 0\nhigh 0\nmax 3\noom " + strconv.Itoa(oom) + "\noom_kill " + strconv.Itoa(kill) + "\noom_group_kill 0\n"
}

// TestOOMV2CounterFake drives the shared inotify watch with a fake
// memory.events file: the machine's unified hierarchy has no memory
// controller (it is bound to v1), so the kernel's file cannot be used.
func TestOOMV2CounterFake(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "ctr")
	file := filepath.Join(dir, "memory.events")
	writeCgroupFiles(t, dir, map[string]string{"memory.events": memoryEvents(1, 1)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var a, b atomic.Int32
	wa, err := watchCounter(ctx, dir, "memory.events", "oom_kill", func() { a.Add(1) }, func(oomWatch) {})
	if err != nil {
		t.Fatal(err)
	}
	// A second watch of the same file shares its inotify descriptor.
	ctxB, cancelB := context.WithCancel(context.Background())
	wb, err := watchCounter(ctxB, dir, "memory.events", "oom_kill", func() { b.Add(1) }, func(oomWatch) {})
	if err != nil {
		t.Fatal(err)
	}
	if wa.fileWd != wb.fileWd || wa.dirWd != wb.dirWd {
		t.Errorf("descriptors not shared: %d/%d, %d/%d", wa.fileWd, wa.dirWd, wb.fileWd, wb.dirWd)
	}

	rewriteFile(t, file, memoryEvents(2, 1)) // an oom without a kill: nothing
	time.Sleep(100 * time.Millisecond)
	waitCalls(t, &a, 0)
	rewriteFile(t, file, memoryEvents(3, 3)) // two kills, counted before the watch reads
	waitCalls(t, &a, 2)
	waitCalls(t, &b, 2)

	// Stopping one watch leaves the other working.
	cancelB()
	select {
	case <-wb.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch b did not stop on cancel")
	}
	rewriteFile(t, file, memoryEvents(4, 4))
	waitCalls(t, &a, 3)
	waitCalls(t, &b, 2)

	// Removing the directory ends the watch.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wa.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch a did not stop when its directory went")
	}
	n, err := sharedInotify()
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for wd, ws := range n.watches {
		for _, w := range ws {
			if w == wa || w == wb {
				t.Errorf("stopped watch still under descriptor %d", wd)
			}
		}
	}
}

func TestOOMV2WatchOOMFake(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ctr")
	writeCgroupFiles(t, dir, map[string]string{"memory.events": memoryEvents(0, 0)})
	c := &Cgroup{pid: 1, version: 2, unified: dir}
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	if err := c.WatchOOM(ctx, func() { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	w := c.oom.(*v2Watch)
	c.mu.Unlock()
	// Whether the watch's goroutine or FlushOOM reports it, the kill is
	// reported once, and by the time FlushOOM returns.
	rewriteFile(t, filepath.Join(dir, "memory.events"), memoryEvents(1, 1))
	c.FlushOOM(false)
	if got := n.Load(); got != 1 {
		t.Errorf("after FlushOOM: %d calls, want 1", got)
	}
	waitCalls(t, &n, 1)
	cancel()
	select {
	case <-w.stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop on cancel")
	}
	c.mu.Lock()
	if c.oom != nil {
		t.Error("stopped watch still registered")
	}
	c.mu.Unlock()
	if err := c.WatchOOM(ctx, func() {}); err == nil {
		t.Error("WatchOOM with a done context: no error")
	}
}
