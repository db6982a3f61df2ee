package stdio

import (
	"errors"
	goio "io"
	"os"
	"syscall"
	"testing"
	"time"
)

// ctr writes all of stdin to the fifo, closes its writer, then calls
// CloseIO: every byte must arrive, then EOF.
func TestStdinCloseIODeliversEverythingThenEOF(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	openStdin(t, p)
	client := openClient(t, path, os.O_WRONLY)
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
	openStdin(t, p)
	client := openClient(t, path, os.O_WRONLY)
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
	openStdin(t, p)
	client := openClient(t, path, os.O_WRONLY)
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
	openStdin(t, p)
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
	openStdin(t, p)
	client := openClient(t, path, os.O_WRONLY)
	stdin, _, _ := container(t, p)
	stdin.Close()
	client.Write([]byte("nobody reads this"))
	time.Sleep(100 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func openStdin(t *testing.T, p *Process) {
	t.Helper()
	if err := p.OpenStdin(); err != nil {
		t.Fatalf("OpenStdin: %v", err)
	}
}

// Until OpenStdin (after the runtime's create, or at an exec's Start) the
// stdin fifo has no reader: a client cannot write yet, as with the reference
// shim. Clients time their CloseIO on that.
func TestStdinNotWritableBeforeOpenStdin(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
		t.Fatal("the stdin fifo has a reader before OpenStdin")
	} else if !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("open for writing before OpenStdin: %v, want ENXIO", err)
	}
	openStdin(t, p)
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open for writing after OpenStdin: %v", err)
	}
	f.Close()
}

// A CloseIO before OpenStdin (a client done with an exec's stdin before
// Start) is kept: stdin then ends with the client's writer.
func TestStdinCloseIOBeforeOpenStdin(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	openStdin(t, p)
	client := openClient(t, path, os.O_WRONLY)
	stdin, _, _ := container(t, p)
	got := readAllAsync(stdin)
	client.Write([]byte("x"))
	client.Close()
	sameBytes(t, "container stdin", await(t, got, 5*time.Second, "container reads stdin"), []byte("x"))
}

// A client done with stdin before it was opened (containerd's fifo closes
// an unopened writer by opening a reader itself), then CloseIO: EOF at once.
func TestStdinClientGoneAndCloseIOBeforeOpenStdin(t *testing.T) {
	dir := t.TempDir()
	path := mkfifo(t, dir, "in")
	p := newOrFatal(t, Config{Stdin: path}, noOwner)
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := openClient(t, path, os.O_WRONLY)
	w.Close()
	r.Close()
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	openStdin(t, p)
	stdin, _, _ := container(t, p)
	sameBytes(t, "container stdin", await(t, readAllAsync(stdin), 5*time.Second, "container reads stdin"), nil)
}
