package stdio

import (
	"slices"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in      string
		kind    kind
		path    string
		args    []string
		errPart string
	}{
		{in: "", kind: kindNull},
		{in: "/run/containerd/fifo/1/c-stdout", kind: kindFifo, path: "/run/containerd/fifo/1/c-stdout"},
		{in: "/run/containerd//fifo/./1/c-stdout", kind: kindFifo, path: "/run/containerd/fifo/1/c-stdout"},
		{in: "relative/fifo", errPart: "must be absolute"},
		{in: "fifo:///run/x/stdin", kind: kindFifo, path: "/run/x/stdin"},
		{in: "fifo://run/x/stdin", errPart: "must be absolute"},
		{in: "file:///var/log/c.log", kind: kindFile, path: "/var/log/c.log"},
		{in: "file:///var/log/../log/c.log", kind: kindFile, path: "/var/log/c.log"},
		{in: "binary:///usr/bin/logger", kind: kindBinary, path: "/usr/bin/logger"},
		{in: "binary:///usr/bin/logger?z=1&a=two&m=x%20y", kind: kindBinary, path: "/usr/bin/logger",
			args: []string{"a", "two", "m", "x y", "z", "1"}},
		{in: "binary:///usr/bin/logger?flag", kind: kindBinary, path: "/usr/bin/logger", args: []string{"flag"}},
		{in: "http://example.com/x", errPart: `unsupported scheme "http"`},
		{in: "npipe:///x", errPart: "npipe:///x"},
		{in: "file://relative/c.log", errPart: "absolute path"},
		{in: "file:relative.log", errPart: "absolute path"},
		{in: "file:///x?y=1", errPart: "no query"},
		{in: "binary://usr/bin/logger", errPart: "absolute path"},
		{in: "fifo://", errPart: "empty fifo path"},
	} {
		got, err := parseURI(tc.in)
		if tc.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("parseURI(%q) = %+v, %v; want an error naming the URI and %q", tc.in, got, err, tc.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseURI(%q): %v", tc.in, err)
			continue
		}
		if got.kind != tc.kind || got.path != tc.path || !slices.Equal(got.args, tc.args) {
			t.Errorf("parseURI(%q) = %v %q %q, want %v %q %q", tc.in, got.kind, got.path, got.args, tc.kind, tc.path, tc.args)
		}
	}
}

func TestNewRefusesBadStdio(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg     Config
		errPart string
	}{
		{Config{Stdin: "file://" + dir + "/in"}, "stdin can only be a fifo"},
		{Config{Stdout: "ftp://x/y"}, "ftp://x/y"},
		{Config{Stdout: dir + "/missing"}, dir + "/missing"},
		{Config{Stdout: "binary:///bin/a", Stderr: "binary:///bin/b"}, "two loggers"},
	} {
		p, err := New(t.Context(), tc.cfg, noOwner, testStarter)
		if err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded, want an error about %q", tc.cfg, tc.errPart)
			continue
		}
		if !strings.Contains(err.Error(), tc.errPart) {
			t.Errorf("New(%+v) = %v, want an error about %q", tc.cfg, err, tc.errPart)
		}
	}
}
