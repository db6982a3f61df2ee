package shim

import (
	"runtime/debug"
	"testing"
)

// gcPercentNow reads the collector's pace without changing it.
func gcPercentNow() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// A new shim leaves the collector at the runtime's pace while it starts up
// (its sandbox, its first containers) and goes to gcPercent once settled:
// at its first trim.
func TestTrimmerStartupPace(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tr := newTrimmer()
	defer tr.stop()
	if p := gcPercentNow(); p != 100 {
		t.Fatalf("GC percent %d while starting up, want the runtime's 100", p)
	}
	tr.trim()
	if p := gcPercentNow(); p != gcPercent {
		t.Fatalf("GC percent %d once settled, want %d", p, gcPercent)
	}
}

// GOGC in the shim's environment wins, from the start.
func TestTrimmerGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "50")
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	tr := newTrimmer()
	defer tr.stop()
	tr.trim()
	if p := gcPercentNow(); p != 50 {
		t.Fatalf("GC percent %d, want GOGC's 50", p)
	}
}
