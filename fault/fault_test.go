package fault

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "faults")
	if err := os.WriteFile(file, []byte("sandbox.process, pod.pin@2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string][]string{
		"":                      nil,
		"a,b":                   {"a", "b"},
		"@" + file:              {"pod.pin", "sandbox.process"},
		"@" + file + ".missing": nil,
		" a , ,b ":              {"a", "b"},
	} {
		var got []string
		for step := range parse(list(env)) {
			got = append(got, step)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", env, got, want)
		}
	}
}

// with replaces the process's rules for one test.
func with(t *testing.T, list string) {
	t.Helper()
	saved, savedChecks := rules, checks
	rules, checks = parse(list), map[string]int{}
	t.Cleanup(func() { rules, checks = saved, savedChecks })
}

// failures runs n checks of step and says which failed (1-based).
func failures(step string, n int) []int {
	var failed []int
	for i := 1; i <= n; i++ {
		if err := Check(step); err != nil {
			failed = append(failed, i)
		}
	}
	return failed
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		list, step string
		want       []int
	}{
		{"", "task.mount", nil},
		{"task.mount", "task.mount", []int{1, 2, 3, 4}},
		{"task.mount", "task.mounts", nil},
		{" pod.pin , task.mount@2 ", "task.mount", []int{2}},
		{"shim.publish@1,shim.publish@3", "shim.publish", []int{1, 3}},
		{"task.mount@2,task.mount", "task.mount", []int{1, 2, 3, 4}},
		{"task.mount@x", "task.mount", []int{1, 2, 3, 4}}, // a typo fails always, never silently
		{"task.mount@0", "task.mount", []int{1, 2, 3, 4}},
	} {
		with(t, tc.list)
		if got := failures(tc.step, 4); !slices.Equal(got, tc.want) {
			t.Errorf("%q, 4 checks of %s: failed at %v, want %v", tc.list, tc.step, got, tc.want)
		}
	}
}

func TestCheckError(t *testing.T) {
	with(t, "pod.pin")
	err := Check("pod.pin")
	if !errors.Is(err, ErrInjected) || !strings.HasPrefix(err.Error(), "pod.pin: ") {
		t.Fatalf("Check = %v, want an ErrInjected naming the step", err)
	}
}

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
