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

// parseURI parses one stream's URI: "" (null), a plain path or fifo://path
// (fifo), file:///abs/path, or binary:///abs/path?k=v&k2=v2.
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
		t.kind, t.path = kindFifo, rest
		return t, nil
	}
	if strings.HasPrefix(s, "/") || !strings.Contains(s, ":") {
		t.kind, t.path = kindFifo, s
		return t, nil
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
		// A relative path with a colon in it, such as "a:b/c".
		t.kind, t.path = kindFifo, s
		return t, nil
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
