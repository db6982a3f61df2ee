package pod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of nothing: %v, want fs.ErrNotExist", err)
	}
	st := &State{
		ID:         "pa",
		Namespaces: Namespaces{UserPath: "/s/user", NetPath: "/s/net", UIDMappings: maps100, GIDMappings: maps200, Owned: true, Pins: []string{"/s/user", "/s/net"}},
		Containers: []string{"a", "b"},
	}
	for range 2 {
		if err := Save(dir, st); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("Load = %+v, want %+v", got, st)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "state.json" {
		t.Errorf("state dir holds %v, want state.json alone", ents)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Error("Load of a torn state worked")
	}
}
