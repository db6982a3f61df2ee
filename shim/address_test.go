package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// `delete` reads a bundle's address file while a `start` of another
// container of the pod may be writing it (each start writes its own bundle,
// but a retried start, or containerd 1.6 reading it back, races the same
// way). A reader sees a whole address, the one before or the one after,
// never a half-written or empty one; concurrent writers of one bundle do not
// trip over each other's temporary files either.
func TestAddressFileIsNeverSeenHalfWritten(t *testing.T) {
	bundle := t.TempDir()
	addrs := []string{
		"unix:///run/containerd/s/" + strings.Repeat("a", 64),
		"unix:///run/containerd/s/" + strings.Repeat("b", 64) + "/and-a-longer-tail",
	}
	if err := writeAddress(bundle, addrs[0]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bundle, "address")

	var stop atomic.Bool
	var bad atomic.Value
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for !stop.Load() {
				b, err := os.ReadFile(path)
				if err != nil {
					if !errors.Is(err, fs.ErrNotExist) {
						bad.Store(err.Error())
					} else {
						bad.Store("the address file was missing")
					}
					return
				}
				if s := string(b); s != addrs[0] && s != addrs[1] {
					bad.Store(fmt.Sprintf("read %q", s))
					return
				}
			}
		}()
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 200 {
				if bad.Load() != nil {
					return
				}
				if err := writeAddress(bundle, addrs[(i+w)%2]); err != nil {
					bad.Store(err.Error())
					return
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a reader of the address file, while it was rewritten: %s", v)
	}
	ents, err := os.ReadDir(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the bundle holds %q, want only the address file", names)
	}
}
