package fault

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

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
