package undo

import (
	"errors"
	"slices"
	"testing"
)

func TestUnwindLastFirstAndJoinsFailures(t *testing.T) {
	var order []int
	var s Stack
	cause := errors.New("step 4 failed")
	stuck := errors.New("cannot undo step 2")
	s.Push(func() error { order = append(order, 1); return nil })
	s.Push(func() error { order = append(order, 2); return stuck })
	s.Push(func() error { order = append(order, 3); return nil })
	err := s.Unwind(cause)
	if !slices.Equal(order, []int{3, 2, 1}) {
		t.Errorf("undone in order %v, want 3 2 1", order)
	}
	if !errors.Is(err, cause) || !errors.Is(err, stuck) {
		t.Errorf("Unwind: %v, want the cause and what could not be undone", err)
	}
	var none Stack
	if err := none.Unwind(cause); !errors.Is(err, cause) {
		t.Errorf("empty Unwind: %v", err)
	}
}
