package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeRuntime writes a runtime binary that answers `exec` the way runc does
// with the spec read from --process: once it has read all of the spec, it
// writes it to <dir>/got (so got exists only if the spec was read). If
// <dir>/fail exists it fails before reading the spec (as runc does on a
// paused container), if <dir>/fail-after exists, after, logging why as runc
// does.
func fakeRuntime(t *testing.T) (*Runc, string) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
while [ $# -gt 1 ]; do
	case "$1" in --process) spec="$2"; shift ;; --log) log="$2"; shift ;; esac
	shift
done
if [ -e ` + dir + `/fail ]; then echo '{"level":"error","msg":"cannot exec in a paused container"}' >> "$log"; exit 1; fi
spec=$(cat "$spec") || exit 3
printf '%s' "$spec" > ` + dir + `/got
if [ -e ` + dir + `/fail-after ]; then echo '{"level":"error","msg":"exec failed: no such file"}' >> "$log"; exit 2; fi
`
	bin := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Runc{Binary: bin, LogPath: filepath.Join(dir, "log.json"), Children: Default()}, dir
}

func stderrFile(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestPendingExecRunHandsOverTheSpec(t *testing.T) {
	r, dir := fakeRuntime(t)
	p, err := r.StartExec("c1", ExecOpts{})
	if err != nil {
		t.Fatal(err)
	}
	// Larger than a pipe holds: the write must not wait for a reader that is
	// only reading once it is written.
	big := strings.Repeat("x", 3*minPipeCapacity)
	spec := &specs.Process{Args: []string{"echo", big}, Cwd: "/"}
	if err := p.Run(spec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "got"))
	if err != nil || !strings.Contains(string(got), big) || !strings.Contains(string(got), `"cwd":"/"`) {
		t.Fatalf("the runtime read %d bytes (%v), want the spec", len(got), err)
	}
	if err := p.Run(spec); !errors.Is(err, ErrPendingGone) {
		t.Fatalf("a second Run: %v, want ErrPendingGone", err)
	}
	p.Abort() // after Run: nothing to do
}

func TestPendingExecRuntimeGoneBeforeReading(t *testing.T) {
	r, dir := fakeRuntime(t)
	if err := os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := r.StartExec("c1", ExecOpts{Stdio: Stdio{Stderr: stderrFile(t, dir)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(&specs.Process{Args: []string{"true"}}); !errors.Is(err, ErrPendingGone) {
		t.Fatalf("Run after the runtime failed unread: %v, want ErrPendingGone", err)
	}
}

// A runtime run for an exec at its Start (not readied ahead, or readied and
// gone) that fails before reading the spec failed on its own: Exec returns
// that failure in the runtime's words, not ErrPendingGone, which would only
// ask for the fresh runtime that has just failed.
func TestExecRuntimeFailingUnreadReportsItsFailure(t *testing.T) {
	r, dir := fakeRuntime(t)
	if err := os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Exec(context.Background(), "c1", &specs.Process{Args: []string{"true"}}, ExecOpts{})
	var rerr *Error
	if errors.Is(err, ErrPendingGone) || !errors.As(err, &rerr) || !strings.Contains(err.Error(), "cannot exec in a paused container") {
		t.Fatalf("Exec: %v, want the runtime's failure in its words", err)
	}
}

func TestPendingExecRunReportsTheRuntimesFailure(t *testing.T) {
	r, dir := fakeRuntime(t)
	if err := os.WriteFile(filepath.Join(dir, "fail-after"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := r.StartExec("c1", ExecOpts{Stdio: Stdio{Stderr: stderrFile(t, dir)}})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(&specs.Process{Args: []string{"true"}})
	var rerr *Error
	if !errors.As(err, &rerr) || errors.Is(err, ErrPendingGone) || !strings.Contains(err.Error(), "exec failed: no such file") {
		t.Fatalf("Run: %v, want the runtime's failure in its words", err)
	}
}

func TestPendingExecAbort(t *testing.T) {
	r, dir := fakeRuntime(t)
	p, err := r.StartExec("c1", ExecOpts{})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.call.cmd.Process.Pid
	p.Abort()
	p.Abort()
	if err := p.Run(&specs.Process{Args: []string{"true"}}); !errors.Is(err, ErrPendingGone) {
		t.Fatalf("Run after Abort: %v, want ErrPendingGone", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "got")); err == nil {
		t.Fatal("an aborted runtime read a spec")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
			break // killed and reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("aborted runtime %d still there", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPendingExecMissingBinary(t *testing.T) {
	r := &Runc{Binary: "/nonexistent/runc", Children: Default()}
	if _, err := r.StartExec("c1", ExecOpts{}); !errors.Is(err, ErrRuntimeMissing) {
		t.Fatalf("StartExec with a missing binary: %v, want ErrRuntimeMissing", err)
	}
}

func TestPendingExecBound(t *testing.T) {
	r, _ := fakeRuntime(t)
	var ps []Pending
	defer func() {
		for _, p := range ps {
			p.Abort()
		}
	}()
	for i := 0; i < maxPendingExecs; i++ {
		p, err := r.ReadyExec("c1", ExecOpts{})
		if err != nil {
			t.Fatalf("pending exec %d: %v", i, err)
		}
		ps = append(ps, p)
	}
	if _, err := r.ReadyExec("c1", ExecOpts{}); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("pending exec %d: %v, want ErrTooManyPending", maxPendingExecs+1, err)
	}
	// One run frees a place.
	if err := ps[0].Run(&specs.Process{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	p, err := r.ReadyExec("c1", ExecOpts{})
	if err != nil {
		t.Fatalf("after a Run: %v", err)
	}
	ps = append(ps, p)
	// Execs started at once, not readied, are not bounded.
	q, err := r.StartExec("c1", ExecOpts{})
	if err != nil {
		t.Fatalf("StartExec past the bound: %v", err)
	}
	ps = append(ps, q)
}
