package stdio

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileAppendsBothStreams(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "logs", "c1.log") // the parent does not exist yet
	uri := "file://" + path
	for _, round := range []string{"one", "two"} {
		p := newOrFatal(t, Config{Stdout: uri, Stderr: uri}, noOwner)
		if len(p.sinks) != 1 {
			t.Fatalf("one file for both streams uses %d handles", len(p.sinks))
		}
		_, stdout, stderr := container(t, p)
		stdout.Write([]byte(round + "-out\n"))
		stdout.Close()
		if p.Wait(100 * time.Millisecond) {
			t.Fatal("Wait returned true while stderr is open")
		}
		stderr.Write([]byte(round + "-err\n"))
		stderr.Close()
		if !p.Wait(5 * time.Second) {
			t.Fatal("Wait timed out")
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); got != "one-out\none-err\ntwo-out\ntwo-err\n" {
		t.Fatalf("log file holds %q", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("log file mode %v, want 0644", fi.Mode().Perm())
	}
}

// writeLogger writes a logger script that records its arguments and
// environment, signals ready as told, and copies fd 3 and fd 4 to files.
func writeLogger(t *testing.T, dir, ready string) string {
	t.Helper()
	script := `#!/bin/sh
out=` + dir + `
printf '%s\n' "$@" > "$out/args"
printf '%s %s\n' "$CONTAINER_ID" "$CONTAINER_NAMESPACE" > "$out/env"
` + ready + `
cat <&4 > "$out/stderr" &
cat <&3 > "$out/stdout"
wait
`
	path := filepath.Join(dir, "logger.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBinaryLogger(t *testing.T) {
	for _, tc := range []struct{ name, ready string }{
		{"close fd 5", "exec 5>&-"},
		{"write fd 5", "echo ready >&5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := writeLogger(t, dir, tc.ready)
			uri := "binary://" + bin + "?level=debug&id=c1"
			p := newOrFatal(t, Config{Stdout: uri, Stderr: uri}, noOwner)
			// Ready means the logger ran this far.
			if args, err := os.ReadFile(filepath.Join(dir, "args")); err != nil || string(args) != "id\nc1\nlevel\ndebug\n" {
				t.Fatalf("logger args %q, %v", args, err)
			}
			if env, err := os.ReadFile(filepath.Join(dir, "env")); err != nil || string(env) != "c1 ns1\n" {
				t.Fatalf("logger env %q, %v", env, err)
			}
			_, stdout, stderr := container(t, p)
			if stdout == nil || stderr == nil {
				t.Fatal("no container ends for a binary logger")
			}
			stdout.Write([]byte("to stdout\n"))
			stderr.Write([]byte("to stderr\n"))
			stdout.Close()
			stderr.Close()
			// Wait covers the logger: it exits once both streams ended.
			if !p.Wait(5 * time.Second) {
				t.Fatal("Wait timed out: the logger did not exit after EOF")
			}
			for name, want := range map[string]string{"stdout": "to stdout\n", "stderr": "to stderr\n"} {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(got) != want {
					t.Errorf("logger's %s file holds %q, %v; want %q", name, got, err, want)
				}
			}
		})
	}
}

// A logger that only takes stdout still gets an fd 4 (at EOF).
func TestBinaryLoggerStdoutOnly(t *testing.T) {
	dir := t.TempDir()
	bin := writeLogger(t, dir, "exec 5>&-")
	p := newOrFatal(t, Config{Stdout: "binary://" + bin}, noOwner)
	_, stdout, stderr := container(t, p)
	if stderr != nil {
		t.Fatal("stderr is not null")
	}
	stdout.Write([]byte("only\n"))
	stdout.Close()
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(got) != "only\n" {
		t.Fatalf("stdout file holds %q", got)
	}
}

// Close stops a logger that is still running (the container's pipe is held).
func TestBinaryLoggerStoppedByClose(t *testing.T) {
	dir := t.TempDir()
	bin := writeLogger(t, dir, "exec 5>&-")
	p := newOrFatal(t, Config{Stdout: "binary://" + bin}, noOwner)
	container(t, p) // the container's stdout stays open
	if p.Wait(200 * time.Millisecond) {
		t.Fatal("Wait returned true while the logger runs")
	}
	p.Close()
	if !p.Wait(5 * time.Second) {
		t.Fatal("the logger still runs after Close")
	}
}

func TestBinaryLoggerFailures(t *testing.T) {
	for _, tc := range []struct{ name, script, errPart string }{
		{"exits before ready", "#!/bin/sh\nexit 3\n", "exited before it signalled ready"},
		{"never ready", "#!/bin/sh\nexec sleep 30\n", "did not signal ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "logger")
			if err := os.WriteFile(bin, []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p, err := New(t.Context(), Config{Stdout: "binary://" + bin}, noOwner, testStarter)
			if err == nil {
				p.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), bin) {
				t.Fatalf("New: %v; want an error naming %s and %q", err, bin, tc.errPart)
			}
			if d := time.Since(start); d > loggerReadyTimeout+2*time.Second {
				t.Fatalf("New took %v", d)
			}
		})
	}
	t.Run("missing binary", func(t *testing.T) {
		_, err := New(t.Context(), Config{Stdout: "binary:///nonexistent/logger"}, noOwner, testStarter)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/logger") {
			t.Fatalf("New: %v", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "logger")
		os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := New(ctx, Config{Stdout: "binary://" + bin}, noOwner, testStarter)
		if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
			t.Fatalf("New: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("New took %v after its context ended", d)
		}
	})
}

// A terminal's output goes to the logger's fd 3.
func TestBinaryLoggerWithTerminal(t *testing.T) {
	dir := t.TempDir()
	bin := writeLogger(t, dir, "exec 5>&-")
	uri := "binary://" + bin
	p := newOrFatal(t, Config{Stdout: uri, Stderr: uri, Terminal: true}, noOwner)
	master, slave, _ := openPty(t)
	if err := p.SetConsole(master); err != nil {
		t.Fatal(err)
	}
	slave.Write([]byte("tty line\n"))
	slave.Close()
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(got) != "tty line\n" {
		t.Fatalf("logger got %q", got)
	}
}

// A terminal's output may go to a file too.
func TestFileWithTerminal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tty.log")
	p := newOrFatal(t, Config{Stdout: "file://" + path, Terminal: true}, noOwner)
	master, slave, _ := openPty(t)
	if err := p.SetConsole(master); err != nil {
		t.Fatal(err)
	}
	slave.Write([]byte("to file\n"))
	slave.Close()
	if !p.Wait(5 * time.Second) {
		t.Fatal("Wait timed out")
	}
	if got, _ := os.ReadFile(path); string(got) != "to file\n" {
		t.Fatalf("file holds %q", got)
	}
}
