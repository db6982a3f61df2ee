package stdio

import (
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
)

// kind is what a stdio URI names.
type kind int

const (
	kindNull   kind = iota // empty: /dev/null for the container
	kindFifo               // a fifo containerd or its client created
	kindFile               // file:///abs/path: append output to a file
	kindBinary             // binary:///abs/path?k=v: a logger child
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindFifo:
		return "fifo"
	case kindFile:
		return "file"
	case kindBinary:
		return "binary"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// target is one parsed stdio URI.
type target struct {
	kind kind
	uri  string   // as containerd sent it
	path string   // fifo, file or logger binary
	args []string // logger arguments: key, value pairs sorted by key
}

// parseURI parses one stream's URI: "" (null), an absolute path or
// fifo:///abs/path (fifo), file:///abs/path, or binary:///abs/path?k=v&k2=v2.
// Every path it returns is absolute and clean: a relative one would name a
// place relative to the shim's working directory, which is no container's.
func parseURI(s string) (target, error) {
	t := target{uri: s}
	if s == "" {
		t.kind = kindNull
		return t, nil
	}
	if rest, ok := strings.CutPrefix(s, "fifo://"); ok {
		if rest == "" {
			return t, fmt.Errorf("stdio URI %q: empty fifo path", s)
		}
		return fifoTarget(t, rest)
	}
	if strings.HasPrefix(s, "/") || !strings.Contains(s, ":") {
		return fifoTarget(t, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return t, fmt.Errorf("stdio URI %q: %w", s, err)
	}
	switch u.Scheme {
	case "file":
		t.kind = kindFile
	case "binary":
		t.kind = kindBinary
	case "":
		// A path with a colon in it that is no URI, such as "a:b/c".
		return fifoTarget(t, s)
	default:
		return t, fmt.Errorf("stdio URI %q: unsupported scheme %q (want a fifo path, fifo://, file:// or binary://)", s, u.Scheme)
	}
	if u.Host != "" || u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return t, fmt.Errorf("stdio URI %q: %s:// needs an absolute path (%s:///abs/path)", s, u.Scheme, u.Scheme)
	}
	t.path = filepath.Clean(u.Path)
	if t.kind == kindFile {
		if u.RawQuery != "" {
			return t, fmt.Errorf("stdio URI %q: file:// takes no query", s)
		}
		return t, nil
	}
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range q[k] {
			// "?flag" becomes the single argument "flag".
			t.args = append(t.args, k)
			if v != "" {
				t.args = append(t.args, v)
			}
		}
	}
	return t, nil
}

// fifoTarget is a fifo at path, which must be absolute.
func fifoTarget(t target, path string) (target, error) {
	if !filepath.IsAbs(path) {
		return t, fmt.Errorf("stdio URI %q: a fifo path must be absolute", t.uri)
	}
	t.kind, t.path = kindFifo, filepath.Clean(path)
	return t, nil
}
