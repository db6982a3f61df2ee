package stdio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty opens a pty pair from /dev/ptmx: the master as the runtime would
// send it, and the slave as the container's terminal, without echo or
// output processing so that bytes pass unchanged, but canonical so that ^D
// is end of input.
func openPty(t *testing.T) (master, slave *os.File, n int) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err = unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	sfd, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Lflag &^= unix.ECHO | unix.ECHONL
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	slave = os.NewFile(uintptr(sfd), fmt.Sprintf("/dev/pts/%d", n))
	t.Cleanup(func() { master.Close(); slave.Close() })
	return master, slave, n
}

func TestConsoleCopiesAndResize(t *testing.T) {
	dir := t.TempDir()
	inPath, outPath := mkfifo(t, dir, "in"), mkfifo(t, dir, "out")
	p := newOrFatal(t, Config{Stdin: inPath, Stdout: outPath, Stderr: mkfifo(t, dir, "err"), Terminal: true}, noOwner)
	openStdin(t, p)
	if in, out, errf := p.RuntimeStdio(); in != nil || out != nil || errf != nil {
		t.Fatal("a terminal process has pipe ends")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// A resize before the console exists (nerdctl exec -it resizes before
	// Start) is kept and set when the console comes.
	if err := p.Resize(80, 24); err != nil {
		t.Fatalf("Resize before the console: %v", err)
	}
	client := openClient(t, inPath, os.O_WRONLY)
	output := readAllAsync(openClient(t, outPath, os.O_RDONLY))
	master, slave, _ := openPty(t)
	if err := p.SetConsole(master); err != nil {
		t.Fatalf("SetConsole: %v", err)
	}
	if err := p.SetConsole(master); err == nil {
		t.Fatal("a second SetConsole succeeded")
	}
	if ws, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ); err != nil || ws.Col != 80 || ws.Row != 24 {
		t.Fatalf("window is %+v (%v), want the 80x24 asked for before the console", ws, err)
	}

	if err := p.Resize(132, 43); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	ws, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Col != 132 || ws.Row != 43 {
		t.Fatalf("window is %dx%d, want 132x43", ws.Col, ws.Row)
	}

	// stdin: the client types, goes away, CloseIO: the terminal reads the
	// line and then end of input.
	typed := readAllAsync(slave)
	client.Write([]byte("typed line\n"))
	client.Close()
	select {
	case r := <-typed:
		t.Fatalf("terminal input ended (%q) before CloseIO", r.data)
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if got := await(t, typed, 5*time.Second, "terminal reads stdin"); string(got) != "typed line\n" {
		t.Fatalf("terminal read %q", got)
	}

	// stdout: the container writes to its terminal, the client reads it;
	// the last slave closing is EOF.
	if _, err := slave.Write([]byte("hello from the tty\n")); err != nil {
		t.Fatal(err)
	}
	if p.Wait(100 * time.Millisecond) {
		t.Fatal("Wait returned true while the terminal is open")
	}
	slave.Close()
	if got := await(t, output, 5*time.Second, "client reads stdout"); string(got) != "hello from the tty\n" {
		t.Fatalf("client read %q", got)
	}
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out after the terminal closed")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// Without a stdout the console's output is drained all the same.
func TestConsoleWithoutStdout(t *testing.T) {
	p := newOrFatal(t, Config{Terminal: true}, noOwner)
	master, slave, _ := openPty(t)
	if err := p.SetConsole(master); err != nil {
		t.Fatal(err)
	}
	wrote := writeAsync(slave, make([]byte, 1<<20))
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("terminal output blocks with no stdout")
	}
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out")
	}
}

func TestSetConsoleRefused(t *testing.T) {
	p := newOrFatal(t, Config{}, noOwner)
	master, _, _ := openPty(t)
	if err := p.SetConsole(master); err == nil {
		t.Fatal("SetConsole on a process without terminal succeeded")
	}
	if err := p.Resize(80, 24); err == nil {
		t.Fatal("Resize without a console succeeded")
	}
}

func TestConsoleSocket(t *testing.T) {
	dir := t.TempDir()
	cs, err := NewConsoleSocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	fi, err := os.Stat(cs.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("console socket mode %v, want a 0600 socket", fi.Mode())
	}

	// The runtime's side: connect, send the master with SCM_RIGHTS.
	master, slave, n := openPty(t)
	sent := make(chan error, 1)
	go func() {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cs.Path(), Net: "unix"})
		if err != nil {
			sent <- err
			return
		}
		defer conn.Close()
		_, _, err = conn.WriteMsgUnix([]byte(slave.Name()), unix.UnixRights(int(master.Fd())), nil)
		sent <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := cs.ReceiveMaster(ctx)
	if err != nil {
		t.Fatalf("ReceiveMaster: %v", err)
	}
	defer got.Close()
	if err := <-sent; err != nil {
		t.Fatalf("send master: %v", err)
	}
	if got.Name() != slave.Name() {
		t.Errorf("received master named %q, want %q", got.Name(), slave.Name())
	}
	rc, _ := got.SyscallConn()
	var ptn int
	rc.Control(func(fd uintptr) { ptn, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN) })
	if err != nil || ptn != n {
		t.Fatalf("received fd is pty %d (%v), want %d", ptn, err, n)
	}
	slave.Write([]byte("x\n"))
	buf := make([]byte, 8)
	if m, err := got.Read(buf); err != nil || string(buf[:m]) != "x\n" {
		t.Fatalf("read %q, %v from the received master", buf[:m], err)
	}

	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cs.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file still there after Close: %v", err)
	}
	if err := cs.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConsoleSocketTimeout(t *testing.T) {
	cs, err := NewConsoleSocket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = cs.ReceiveMaster(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReceiveMaster = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ReceiveMaster took %v", d)
	}
}

// Something that is not a terminal is refused.
func TestConsoleSocketRefusesNonTerminal(t *testing.T) {
	cs, err := NewConsoleSocket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: cs.Path(), Net: "unix"})
		if err != nil {
			return
		}
		defer conn.Close()
		conn.WriteMsgUnix([]byte("pipe"), unix.UnixRights(int(r.Fd())), nil)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	f, err := cs.ReceiveMaster(ctx)
	<-sent
	if err == nil {
		f.Close()
		t.Fatal("ReceiveMaster accepted a pipe")
	}
}

func TestConsoleSocketPathTooLong(t *testing.T) {
	dir := t.TempDir()
	long := dir + "/" + fmt.Sprintf("%0100d", 0)
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := NewConsoleSocket(long); err == nil {
		t.Fatal("NewConsoleSocket accepted a path too long for a unix socket")
	}
}
