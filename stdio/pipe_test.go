package stdio

import (
	"bytes"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// container gets the container's ends as the runtime would pass them on:
// duplicated, so that they stay open after CloseRuntimeEnds.
func container(t *testing.T, p *Process) (stdin, stdout, stderr *os.File) {
	t.Helper()
	in, out, errf := p.RuntimeStdio()
	dup := func(f *os.File) *os.File {
		if f == nil {
			return nil
		}
		return dupFile(t, f)
	}
	stdin, stdout, stderr = dup(in), dup(out), dup(errf)
	p.CloseRuntimeEnds()
	if in, out, errf := p.RuntimeStdio(); in != nil || out != nil || errf != nil {
		t.Fatal("RuntimeStdio returns files after CloseRuntimeEnds")
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return stdin, stdout, stderr
}

func TestNullIO(t *testing.T) {
	p := newOrFatal(t, Config{}, noOwner)
	if in, out, errf := p.RuntimeStdio(); in != nil || out != nil || errf != nil {
		t.Fatalf("null io: RuntimeStdio = %v %v %v, want all nil", in, out, errf)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if !p.Wait(time.Second) {
		t.Fatal("Wait on null io timed out")
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestPipesSeparateFifos(t *testing.T) {
	dir := t.TempDir()
	outPath, errPath := mkfifo(t, dir, "out"), mkfifo(t, dir, "err")
	p := newOrFatal(t, Config{Stdout: outPath, Stderr: errPath}, noOwner)
	if in, _, _ := p.RuntimeStdio(); in != nil {
		t.Fatal("stdin is not null")
	}
	outR := readAllAsync(openClient(t, outPath, os.O_RDONLY))
	errR := readAllAsync(openClient(t, errPath, os.O_RDONLY))
	_, stdout, stderr := container(t, p)

	want := randomBytes(64 << 20)
	outW := writeAsync(stdout, want)
	errW := writeAsync(stderr, []byte("oops\n"))
	sameBytes(t, "stdout", await(t, outR, 30*time.Second, "read stdout fifo"), want)
	sameBytes(t, "stderr", await(t, errR, 5*time.Second, "read stderr fifo"), []byte("oops\n"))
	for _, ch := range []<-chan error{outW, errW} {
		if err := <-ch; err != nil {
			t.Fatalf("container write: %v", err)
		}
	}
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out after both streams reached EOF")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestPipesSameFifo(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "both")
	p := newOrFatal(t, Config{Stdout: path, Stderr: path}, noOwner)
	if len(p.sinks) != 1 {
		t.Fatalf("stdout and stderr on one fifo use %d handles, want 1", len(p.sinks))
	}
	got := readAllAsync(openClient(t, path, os.O_RDONLY))
	_, stdout, stderr := container(t, p)

	if _, err := stdout.Write([]byte("out\n")); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	// One stream ended: the client must not see EOF while stderr is open.
	select {
	case r := <-got:
		t.Fatalf("client saw EOF (%q) while stderr is still open", r.data)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := stderr.Write([]byte("err\n")); err != nil {
		t.Fatal(err)
	}
	stderr.Close()
	data := await(t, got, 5*time.Second, "read shared fifo")
	lines := bytes.SplitAfter(data, []byte("\n"))
	slices.SortFunc(lines, bytes.Compare)
	if !bytes.Equal(bytes.Join(lines, nil), []byte("err\nout\n")) {
		t.Fatalf("shared fifo got %q, want out and err lines", data)
	}
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out")
	}
}

func TestPipesOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fchown to another user needs root")
	}
	dir := t.TempDir()
	p := newOrFatal(t, Config{Stdin: mkfifo(t, dir, "in"), Stdout: mkfifo(t, dir, "out")},
		Options{UID: 1234, GID: 5678})
	in, out, _ := p.RuntimeStdio()
	for _, f := range []*os.File{in, out} {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("%s owned by %d:%d, want 1234:5678", f.Name(), st.Uid, st.Gid)
		}
	}
}

func TestWaitTimesOutWhileAWriterHoldsThePipe(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "out")
	p := newOrFatal(t, Config{Stdout: path}, noOwner)
	got := readAllAsync(openClient(t, path, os.O_RDONLY))
	_, stdout, _ := container(t, p)
	// A background child of the container still holds stdout.
	background := dupFile(t, stdout)
	stdout.Write([]byte("main exited\n"))
	stdout.Close()

	start := time.Now()
	if p.Wait(300 * time.Millisecond) {
		t.Fatal("Wait returned true while a writer holds the pipe")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Wait(300ms) took %v", d)
	}
	background.Close()
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out after the last writer closed")
	}
	sameBytes(t, "stdout", await(t, got, 5*time.Second, "read stdout"), []byte("main exited\n"))
}

// Close must not hang when the client went away and the fifo is full: the
// copy is then waiting for room that never comes.
func TestCloseWithFullFifoAndNoClient(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "out")
	p, err := New(t.Context(), Config{Stdout: path}, noOwner, testStarter)
	if err != nil {
		t.Fatal(err)
	}
	_, stdout, _ := container(t, p)
	wrote := writeAsync(stdout, make([]byte, 4<<20))
	time.Sleep(200 * time.Millisecond) // the fifo and the pipe fill up

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with a full fifo")
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("container write of 4 MiB succeeded with nobody reading")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the container's write still blocks after Close")
	}
}

func TestRegularFileIsNotAFifo(t *testing.T) {
	path := t.TempDir() + "/plain"
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(t.Context(), Config{Stdout: path}, noOwner, testStarter)
	if err == nil {
		p.Close()
		t.Fatal("New accepted a regular file as a fifo")
	}
}
