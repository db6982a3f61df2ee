package cgroup

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// pbWriter appends the protobuf wire format of a message to b, field by
// field. Metrics are written this way rather than as typed messages
// marshalled through protobuf's reflection: a shim is polled for them every
// second, and building, filling and marshalling a tree of messages each
// time was most of what a polled shim allocated (and its first use built
// the descriptors of every field, kept for the life of the process).
//
// What it writes decodes as proto.Marshal's output of the same message
// would: scalars that are zero are left out (proto3), a nested message that
// is present is written even when empty, repeated scalars are packed.
type pbWriter struct {
	b []byte
}

// uint64 writes a varint field, unless it is zero.
func (w *pbWriter) uint64(num protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	w.b = protowire.AppendTag(w.b, num, protowire.VarintType)
	w.b = protowire.AppendVarint(w.b, v)
}

// bytes writes a string field, unless it is empty.
func (w *pbWriter) bytes(num protowire.Number, s []byte) {
	if len(s) == 0 {
		return
	}
	w.b = protowire.AppendTag(w.b, num, protowire.BytesType)
	w.b = protowire.AppendBytes(w.b, s)
}

// string writes a string field, unless it is empty.
func (w *pbWriter) string(num protowire.Number, s string) {
	if s == "" {
		return
	}
	w.b = protowire.AppendTag(w.b, num, protowire.BytesType)
	w.b = protowire.AppendString(w.b, s)
}

// begin starts a nested message: its fields are written next, then end
// wraps them.
func (w *pbWriter) begin() int { return len(w.b) }

// end makes what was written since begin returned start the body of the
// message field num: the tag and length go in front of it.
func (w *pbWriter) end(num protowire.Number, start int) {
	n := len(w.b) - start
	hdr := protowire.SizeTag(num) + protowire.SizeVarint(uint64(n))
	w.b = slices.Grow(w.b, hdr)[:len(w.b)+hdr]
	copy(w.b[start+hdr:], w.b[start:start+n])
	h := protowire.AppendTag(w.b[start:start], num, protowire.BytesType)
	protowire.AppendVarint(h, uint64(n))
}

// packed writes a packed repeated varint field of the numbers in list
// (space separated), unless it has none.
func (w *pbWriter) packed(num protowire.Number, list []byte) error {
	start := w.begin()
	for f, rest := nextField(list); len(f) > 0; f, rest = nextField(rest) {
		v, ok := parseUint(f)
		if !ok {
			w.b = w.b[:start]
			return errNotUint(f)
		}
		w.b = protowire.AppendVarint(w.b, v)
	}
	if len(w.b) == start {
		return nil
	}
	w.end(num, start)
	return nil
}
