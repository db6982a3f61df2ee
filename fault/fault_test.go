package fault

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func TestEnableNestsAndRestores(t *testing.T) {
	if err := Check("a.step"); err != nil {
		t.Fatalf("not enabled, yet: %v", err)
	}
	restoreA := Enable("a.step", "b.step")
	restoreB := Enable("a.step")
	if err := Check("a.step"); !errors.Is(err, ErrInjected) {
		t.Fatalf("enabled step: %v, want ErrInjected", err)
	}
	if err := Check("c.step"); err != nil {
		t.Fatalf("step never enabled: %v", err)
	}
	restoreA()
	restoreA() // only the first counts
	if err := Check("a.step"); !errors.Is(err, ErrInjected) {
		t.Fatalf("still enabled by the second Enable: %v", err)
	}
	if err := Check("b.step"); err != nil {
		t.Fatalf("restored: %v", err)
	}
	restoreB()
	if err := Check("a.step"); err != nil {
		t.Fatalf("all restored: %v", err)
	}
}

// Enable and Check from many goroutines at once (go test -race).
func TestEnableConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				restore := Enable("x.step")
				if err := Check("x.step"); !errors.Is(err, ErrInjected) {
					t.Errorf("enabled step: %v", err)
				}
				restore()
			}
		}()
	}
	wg.Wait()
	if err := Check("x.step"); err != nil {
		t.Fatalf("all restored: %v", err)
	}
}

func TestList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "faults")
	if err := os.WriteFile(file, []byte("sandbox.process, pod.pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]map[string]bool{
		"":                      {},
		"a,b":                   {"a": true, "b": true},
		"@" + file:              {"sandbox.process": true, "pod.pin": true},
		"@" + file + ".missing": {},
		" a , ,b ":              {"a": true, "b": true},
	} {
		if got := parse(list(env)); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %v, want %v", env, got, want)
		}
	}
}
