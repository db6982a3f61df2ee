package cgroup

import (
	"os"
	"testing"
	"time"
)

// Warming the migration lock writes the shim's pid where it already is: its
// cgroups, in every hierarchy, are what they were.
func TestWarmMigrationLockMovesNothing(t *testing.T) {
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if err := moveSelfInPlace(); err != nil {
		t.Fatalf("write own pid to own cgroup: %v", err)
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("the process moved:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The asynchronous form: one in flight at a time, and it ends.
	WarmMigrationLock()
	WarmMigrationLock()
	for i := 0; warming.Load(); i++ {
		if i == 5000 {
			t.Fatal("the warming write is still in flight after 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}
