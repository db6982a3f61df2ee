// Package fault lets tests make a chosen step of the shim fail, to prove
// that every failure is undone. The environment variable
// CONTAINERD_SHIM_POD_V2_FAULTS names the steps, comma-separated, or, as
// "@FILE", a file that names them: read when the shim process starts, so a
// test can change the faults of the next shim containerd starts without
// restarting containerd. The shim inherits the variable from containerd's
// environment. A step is named package.step after the package that checks
// it ("task.mount", "pod.pin"); docs/FAULTS.md lists them.
//
// An entry "step" makes every check of that step fail; "step@N" only the
// Nth check of it in the process (counted from 1), so that a failure can hit
// the second of two mounts, or the second container of a pod, and be gone
// for a retry. Entries may repeat a step: "shim.publish@1,shim.publish@2".
// In-process tests use Enable instead. With neither, a check is one lookup
// in an empty map and one atomic load.
package fault

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Env is the environment variable that names the failing steps.
const Env = "CONTAINERD_SHIM_POD_V2_FAULTS"

// ErrInjected is the error of a step made to fail.
var ErrInjected = errors.New("fault injected for testing")

// rule is when a step fails: always, or at the listed checks.
type rule struct {
	always bool
	at     map[int]bool
}

var (
	rules = parse(list(os.Getenv(Env)))

	// mu guards checks: how many times each named step was checked.
	mu     sync.Mutex
	checks = map[string]int{}
)

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

func parse(list string) map[string]*rule {
	m := map[string]*rule{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		step, nth, counted := strings.Cut(s, "@")
		r := m[step]
		if r == nil {
			r = &rule{at: map[int]bool{}}
			m[step] = r
		}
		n, err := strconv.Atoi(nth)
		switch {
		case !counted:
			r.always = true
		case err != nil || n < 1:
			// A typo must not silently test nothing: the step fails always.
			r.always = true
		default:
			r.at[n] = true
		}
	}
	return m
}

// Check returns an error wrapping ErrInjected if step is asked to fail at
// this check.
func Check(step string) error {
	if fromEnv(step) || enabledNow(step) {
		return fmt.Errorf("%s: %w", step, ErrInjected)
	}
	return nil
}

// fromEnv says whether the environment's rules fail this check of step.
func fromEnv(step string) bool {
	r := rules[step]
	if r == nil {
		return false
	}
	mu.Lock()
	checks[step]++
	n := checks[step]
	mu.Unlock()
	return r.always || r.at[n]
}

// Steps enabled by Enable. enabledCount is the number of Enable calls not
// yet restored, so that Check takes no lock while there are none.
var (
	enabledCount atomic.Int32
	// enabledMu guards enabled: per step, how many Enable calls not yet
	// restored name it.
	enabledMu sync.Mutex
	enabled   = map[string]int{}
)

func enabledNow(step string) bool {
	if enabledCount.Load() == 0 {
		return false
	}
	enabledMu.Lock()
	defer enabledMu.Unlock()
	return enabled[step] > 0
}

// Enable makes steps fail in this process until restore is called. It is
// for tests that drive the shim's packages in-process. Calls nest and may
// overlap, from any goroutine: a step fails while any Enable naming it is not
// yet restored. restore may be called more than once; only the first counts.
func Enable(steps ...string) (restore func()) {
	enabledMu.Lock()
	for _, s := range steps {
		enabled[s]++
	}
	enabledMu.Unlock()
	enabledCount.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			enabledMu.Lock()
			for _, s := range steps {
				if enabled[s]--; enabled[s] == 0 {
					delete(enabled, s)
				}
			}
			enabledMu.Unlock()
			enabledCount.Add(-1)
		})
	}
}
