package wire

import (
	"errors"
	"reflect"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// errInvalidUTF8 is protobuf-go's refusal of a string that is not UTF-8.
var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// appendMessage appends the fields of message v (a struct) to b, as
// protobuf-go's deterministic Marshal writes them: by field number, zero
// scalars and nil messages left out (proto3), repeated scalars packed, map
// entries by key with both key and value written. A string that is not
// UTF-8 is refused, as protobuf-go refuses it.
func appendMessage(b []byte, tb *table, v reflect.Value) ([]byte, error) {
	var err error
	for i := range tb.fields {
		f := &tb.fields[i]
		fv := v.Field(f.index)
		switch {
		case f.mapKey != nil:
			b, err = appendMap(b, f, fv)
		case f.rep && f.kind == kindVarint:
			if fv.Len() == 0 {
				continue
			}
			var packed []byte
			for j := 0; j < fv.Len(); j++ {
				packed = protowire.AppendVarint(packed, varintOf(f.goKind, fv.Index(j)))
			}
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendBytes(b, packed)
		case f.rep:
			for j := 0; j < fv.Len() && err == nil; j++ {
				b, err = appendValue(b, f, fv.Index(j), true)
			}
		case f.opt:
			if !fv.IsNil() {
				b, err = appendValue(b, f, fv.Elem(), true)
			}
		default:
			b, err = appendValue(b, f, fv, false)
		}
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendValue appends one value of field f; unless always, a zero scalar or
// a nil message is left out.
func appendValue(b []byte, f *field, v reflect.Value, always bool) ([]byte, error) {
	switch f.kind {
	case kindVarint:
		x := varintOf(f.goKind, v)
		if x == 0 && !always {
			return b, nil
		}
		b = protowire.AppendTag(b, f.num, protowire.VarintType)
		return protowire.AppendVarint(b, x), nil
	case kindString:
		if v.Len() == 0 && !always {
			return b, nil
		}
		if !utf8.ValidString(v.String()) {
			return nil, errInvalidUTF8
		}
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		return protowire.AppendString(b, v.String()), nil
	case kindBytes:
		if v.Len() == 0 && !always {
			return b, nil
		}
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		return protowire.AppendBytes(b, v.Bytes()), nil
	case kindMessage:
		if v.IsNil() && !always {
			return b, nil
		}
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		if v.IsNil() {
			return protowire.AppendVarint(b, 0), nil
		}
		return appendNested(b, func(b []byte) ([]byte, error) { return appendMessage(b, f.msg, v.Elem()) })
	}
	return b, nil
}

// appendMap appends a map's entries in key order.
func appendMap(b []byte, f *field, m reflect.Value) ([]byte, error) {
	if m.Len() == 0 {
		return b, nil
	}
	keys := m.MapKeys()
	slices.SortFunc(keys, func(x, y reflect.Value) int {
		switch {
		case x.String() < y.String():
			return -1
		case x.String() > y.String():
			return 1
		}
		return 0
	})
	for _, k := range keys {
		val := m.MapIndex(k)
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		var err error
		b, err = appendNested(b, func(b []byte) ([]byte, error) {
			b, err := appendValue(b, f.mapKey, k, true)
			if err != nil {
				return nil, err
			}
			return appendValue(b, f.mapVal, val, true)
		})
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendNested appends the length-prefixed bytes that fill appends.
func appendNested(b []byte, fill func([]byte) ([]byte, error)) ([]byte, error) {
	// Room for a one-byte length, moved along if the message is longer.
	start := len(b)
	b = append(b, 0)
	b, err := fill(b)
	if err != nil {
		return nil, err
	}
	n := len(b) - start - 1
	if size := protowire.SizeVarint(uint64(n)); size > 1 {
		b = append(b, make([]byte, size-1)...)
		copy(b[start+size:], b[start+1:start+1+n])
	}
	protowire.AppendVarint(b[:start], uint64(n))
	return b, nil
}

// varintOf is a varint field's value as protobuf writes it: an int32 is
// sign-extended to 64 bits.
func varintOf(k reflect.Kind, v reflect.Value) uint64 {
	switch k {
	case reflect.Bool:
		if v.Bool() {
			return 1
		}
		return 0
	case reflect.Int32, reflect.Int64:
		return uint64(v.Int())
	default:
		return v.Uint()
	}
}
