package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// paths caches where runtime binaries named without a directory were found
// on $PATH: a search walks every $PATH entry, on every runtime call, and the
// shim calls the runtime several times per container and per exec.
var paths struct {
	mu    sync.Mutex // guards found
	found map[string]string
}

// lookPath returns the absolute path of binary, from the cache when it was
// found before and is still there. A name that is not found is returned as
// is, for exec to report.
func lookPath(binary string) string {
	if filepath.Base(binary) != binary {
		return binary // a path: exec uses it as given
	}
	paths.mu.Lock()
	defer paths.mu.Unlock()
	if p, ok := paths.found[binary]; ok {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(binary)
	if err != nil || !filepath.IsAbs(p) {
		return binary
	}
	if paths.found == nil {
		paths.found = map[string]string{}
	}
	paths.found[binary] = p
	return p
}
