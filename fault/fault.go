// Package fault lets tests make a chosen step of the shim fail, to prove
// that every failure is undone. The environment variable
// CONTAINERD_SHIM_POD_V2_FAULTS names the steps, comma-separated
// ("init.attach,pod.pin"), or, as "@FILE", a file that names them: read when
// the shim process starts, so a test can change the faults of the next shim
// containerd starts without restarting containerd. The shim inherits the
// variable from containerd's environment. Unset, a check is one lookup in an
// empty map.
package fault

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Env is the environment variable that names the failing steps.
const Env = "CONTAINERD_SHIM_POD_V2_FAULTS"

// ErrInjected is the error of a step made to fail.
var ErrInjected = errors.New("fault injected for testing")

var steps = parse(list(os.Getenv(Env)))

// list is the steps the variable names, directly or in its file (a missing
// file names none).
func list(env string) string {
	path, ok := strings.CutPrefix(env, "@")
	if !ok {
		return env
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

func parse(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

// Check returns an error wrapping ErrInjected if step is asked to fail.
func Check(step string) error {
	if steps[step] {
		return fmt.Errorf("%s: %w", step, ErrInjected)
	}
	return nil
}
