package cgroup

import (
	"fmt"
	"math"
)

// Parsing of cgroup files as bytes, without allocating: the kernel writes
// them in ASCII, so whitespace is ASCII whitespace.

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// trimSpace trims ASCII whitespace from both ends.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// nextLine splits off the first line of b (without its newline).
func nextLine(b []byte) (line, rest []byte) {
	for i, c := range b {
		if c == '\n' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// nextField splits off the first whitespace-separated field of b; an empty
// field when none is left.
func nextField(b []byte) (field, rest []byte) {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	i := 0
	for i < len(b) && !isSpace(b[i]) {
		i++
	}
	return b[:i], b[i:]
}

// parseUint parses a decimal number as strconv.ParseUint(s, 10, 64) does:
// digits only, no sign, within 64 bits.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// isNegative says whether b is a negative decimal number ("-1"), which v1
// writes for "no limit" in a few files.
// isNegative says whether b is a negative number that fits 64 bits (as
// strconv.ParseInt reads it).
func isNegative(b []byte) bool {
	if len(b) < 2 || b[0] != '-' {
		return false
	}
	v, ok := parseUint(b[1:])
	return ok && v >= 1 && v <= 1<<63
}

// uintValue is a file that holds one number: "max" is ifMax, a negative
// number 0.
func uintValue(what func() string, b []byte, ifMax uint64) (uint64, error) {
	b = trimSpace(b)
	if string(b) == "max" {
		return ifMax, nil
	}
	if n, ok := parseUint(b); ok {
		return n, nil
	}
	if isNegative(b) {
		return 0, nil
	}
	return 0, fmt.Errorf("parse %s: %w", what(), errNotUint(b))
}

// errNotUint is the error for a field that is not a number.
func errNotUint(b []byte) error {
	return fmt.Errorf("%q is not an unsigned decimal number", b)
}

// eachKV calls fn with each "key value" line of a flat keyed file
// (memory.stat, cpu.stat, memory.events...) whose value is a number; other
// lines are skipped, as new kernels may add any.
func eachKV(data []byte, fn func(key []byte, value uint64)) {
	for line, rest := nextLine(data); len(line) > 0 || len(rest) > 0; line, rest = nextLine(rest) {
		line = trimSpace(line)
		i := 0
		for i < len(line) && line[i] != ' ' {
			i++
		}
		if i == len(line) {
			continue
		}
		if v, ok := parseUint(trimSpace(line[i+1:])); ok {
			fn(line[:i], v)
		}
	}
}

// kv returns the value of key in a flat keyed file.
func kv(data []byte, key string) (uint64, bool) {
	var v uint64
	found := false
	eachKV(data, func(k []byte, n uint64) {
		if string(k) == key {
			v, found = n, true
		}
	})
	return v, found
}

// deviceNumbers parses "major:minor".
func deviceNumbers(b []byte) (major, minor uint64, err error) {
	for i, c := range b {
		if c == ':' {
			ma, ok1 := parseUint(b[:i])
			mi, ok2 := parseUint(b[i+1:])
			if ok1 && ok2 {
				return ma, mi, nil
			}
			break
		}
	}
	return 0, 0, fmt.Errorf("device %q: want major:minor", b)
}
