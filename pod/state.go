package pod

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// stateFile is the pod's state in its state dir.
const stateFile = "state.json"

// State is what a pod leaves on disk: enough for `delete` after a crash to
// know whether the container it deletes is the pod's last, and which pins
// to remove then.
type State struct {
	ID string `json:"id"`
	Namespaces
	Containers []string `json:"containers"`
}

// Save writes the state to dir/state.json atomically: a reader sees the old
// state or the new, never a part.
func Save(dir string, st *State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("save state of pod %s: %w", st.ID, err)
	}
	tmp, err := os.CreateTemp(dir, "."+stateFile+".*")
	if err != nil {
		return fmt.Errorf("save state of pod %s: %w", st.ID, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, stateFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save state of pod %s: %w", st.ID, err)
	}
	return nil
}

// Load reads the state saved in dir. A missing state wraps fs.ErrNotExist.
func Load(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("load pod state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("load pod state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}
