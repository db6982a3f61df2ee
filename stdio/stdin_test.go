package stdio

import (
	goio "io"
	"os"
	"testing"
	"time"
)

// ctr writes all of stdin to the fifo, closes its writer, then calls
// CloseIO: every byte must arrive, then EOF.
func TestStdinCloseIODeliversEverythingThenEOF(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	holdStdin(t, p)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)

	want := randomBytes(3<<20 + 17)
	if _, err := client.Write(want); err != nil {
		t.Fatalf("client write: %v", err)
	}
	client.Close()
	if err := p.CloseStdin(); err != nil {
		t.Fatalf("CloseStdin: %v", err)
	}
	sameBytes(t, "container stdin", await(t, got, 10*time.Second, "container reads stdin"), want)
	if err := p.CloseStdin(); err != nil {
		t.Fatalf("second CloseStdin: %v", err)
	}
}

// CloseIO may come while the client still writes: EOF waits for the client.
func TestStdinCloseIOBeforeClientIsDone(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	holdStdin(t, p)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)

	client.Write([]byte("first "))
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		t.Fatalf("container saw EOF (%q) while the client still writes", r.data)
	case <-time.After(200 * time.Millisecond):
	}
	client.Write([]byte("second"))
	client.Close()
	sameBytes(t, "container stdin", await(t, got, 5*time.Second, "container reads stdin"), []byte("first second"))
}

// A client that goes away without CloseIO is no EOF; a new client can write.
func TestStdinClientDisconnectIsNotEOF(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	holdStdin(t, p)
	stdin, _, _ := container(t, p)

	client.Write([]byte("abc"))
	client.Close()
	buf := make([]byte, 3)
	if _, err := goio.ReadFull(stdin, buf); err != nil || string(buf) != "abc" {
		t.Fatalf("container read %q, %v; want abc", buf, err)
	}
	rest := readAllAsync(stdin)
	select {
	case r := <-rest:
		t.Fatalf("container saw EOF (%q, %v) after a client disconnect", r.data, r.err)
	case <-time.After(300 * time.Millisecond):
	}

	again := openClient(t, path, os.O_WRONLY)
	again.Write([]byte("def"))
	again.Close()
	p.CloseStdin()
	sameBytes(t, "after reconnect", await(t, rest, 5*time.Second, "container reads stdin"), []byte("def"))
}

// Close gives the container EOF on stdin even without CloseIO.
func TestStdinCloseEndsIt(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if data := await(t, got, 5*time.Second, "container reads stdin"); len(data) != 0 {
		t.Fatalf("container read %q", data)
	}
}

// A container that closes its stdin early ends the copy without an error.
func TestStdinContainerClosesStdin(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	holdStdin(t, p)
	stdin, _, _ := container(t, p)
	stdin.Close()
	client.Write([]byte("nobody reads this"))
	time.Sleep(100 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func holdStdin(t *testing.T, p *Process) {
	t.Helper()
	if err := p.HoldStdin(); err != nil {
		t.Fatalf("HoldStdin: %v", err)
	}
}

// nerdctl run -i with piped input: the client writes its stdin and closes
// its end before the task exists, and drops its CloseIO. The container must
// still get everything, then EOF: the shim holds the fifo open only from
// after the runtime's create.
func TestStdinClientDoneBeforeHoldIsEOF(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	client.Write([]byte("l1\n"))
	client.Close()
	holdStdin(t, p) // after the runtime's create
	stdin, _, _ := container(t, p)
	sameBytes(t, "container stdin", await(t, readAllAsync(stdin), 5*time.Second, "container reads stdin"), []byte("l1\n"))
}

// The stdin copy starts before any client opened the fifo: that is no EOF.
func TestStdinCopyWaitsForTheClient(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)
	// Nothing can happen while no client is there; a wrong EOF would be
	// immediate, so a short wait is enough to see one.
	select {
	case r := <-got:
		t.Fatalf("container saw EOF (%q, %v) before any client came", r.data, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	client := openClient(t, path, os.O_WRONLY)
	client.Write([]byte("late"))
	client.Close()
	sameBytes(t, "container stdin", await(t, got, 5*time.Second, "container reads stdin"), []byte("late"))
}

// HoldStdin after CloseIO holds nothing: stdin ends with the client.
func TestStdinHoldAfterCloseIO(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	client := openClient(t, path, os.O_WRONLY)
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	holdStdin(t, p)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)
	client.Write([]byte("x"))
	client.Close()
	sameBytes(t, "container stdin", await(t, got, 5*time.Second, "container reads stdin"), []byte("x"))
}
