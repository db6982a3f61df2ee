package stdio

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseURI on any string: no panic; what it accepts is a null target or an
// absolute, clean path (a logger's arguments come in key, value pairs).
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"", "/run/containerd/fifo/1/c-stdout", "relative/fifo", "fifo:///run/x/stdin", "fifo://run/x/stdin",
		"fifo://", "file:///var/log/c.log", "file:///var/log/../log/c.log", "file://relative/c.log", "file:relative.log",
		"file:///x?y=1", "binary:///usr/bin/logger?z=1&a=two&m=x%20y", "binary:///usr/bin/logger?flag",
		"binary://usr/bin/logger", "http://example.com/x", "npipe:///x", "a:b/c", "/a//b/../c", "\x00", "%zz:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseURI(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("parseURI(%q): error %q does not name the URI", s, err)
			}
			return
		}
		if got.uri != s {
			t.Fatalf("parseURI(%q) kept uri %q", s, got.uri)
		}
		if got.kind == kindNull {
			if s != "" || got.path != "" {
				t.Fatalf("parseURI(%q) = null with path %q", s, got.path)
			}
			return
		}
		if !filepath.IsAbs(got.path) || filepath.Clean(got.path) != got.path {
			t.Fatalf("parseURI(%q) accepted the %v path %q: not absolute and clean", s, got.kind, got.path)
		}
		if got.kind != kindBinary && len(got.args) > 0 {
			t.Fatalf("parseURI(%q): a %v with arguments %q", s, got.kind, got.args)
		}
	})
}
