package wire

import (
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxDepth bounds how deep messages may nest, as protobuf-go's default
// recursion limit does.
const maxDepth = protowire.DefaultRecursionLimit

var errDepth = errors.New("exceeded maximum recursion depth")

// decodeMessage merges the fields in b into message v (a struct), as
// protobuf-go's Unmarshal does: a field met again replaces a scalar, merges
// into a message, appends to a repeated field or sets a map entry; a field
// of another number, or of a wire type the field does not take, is skipped.
func decodeMessage(b []byte, tb *table, v reflect.Value, depth int) error {
	return eachField(b, depth, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		f := tb.field(num)
		if f == nil {
			return -1, nil
		}
		n, err := decodeField(b, f, typ, v.Field(f.index), depth)
		if err != nil {
			return 0, fmt.Errorf("field %d of %s: %w", num, tb.typ.Name(), err)
		}
		return n, nil
	})
}

// eachField calls decode for each field in b with the bytes after its tag;
// decode returns how many it took, or -1 to have the field skipped.
func eachField(b []byte, depth int, decode func(protowire.Number, protowire.Type, []byte) (int, error)) error {
	if depth > maxDepth {
		return errDepth
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		n, err := decode(num, typ, b)
		if err != nil {
			return err
		}
		if n < 0 {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
		}
		b = b[n:]
	}
	return nil
}

// field is the field numbered num, or nil.
func (tb *table) field(num protowire.Number) *field {
	for i := range tb.fields {
		if tb.fields[i].num == num {
			return &tb.fields[i]
		}
	}
	return nil
}

// decodeField decodes one occurrence of f from b into fv, and returns the
// bytes it took, or -1 when the wire type is not one f takes.
func decodeField(b []byte, f *field, typ protowire.Type, fv reflect.Value, depth int) (int, error) {
	switch {
	case f.mapKey != nil:
		if typ != protowire.BytesType {
			return -1, nil
		}
		entry, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(fv.Type()))
		}
		key := reflect.New(fv.Type().Key()).Elem()
		val := reflect.New(fv.Type().Elem()).Elem()
		if err := decodeEntry(entry, f, key, val, depth+1); err != nil {
			return 0, err
		}
		if f.mapVal.kind == kindMessage && val.IsNil() {
			val = reflect.New(val.Type().Elem())
		}
		fv.SetMapIndex(key, val)
		return n, nil
	case f.rep && f.kind == kindVarint && typ == protowire.BytesType:
		packed, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		for len(packed) > 0 {
			x, m := protowire.ConsumeVarint(packed)
			if m < 0 {
				return 0, protowire.ParseError(m)
			}
			packed = packed[m:]
			fv.Set(reflect.Append(fv, varintValue(f.goKind, fv.Type().Elem(), x)))
		}
		return n, nil
	case f.rep:
		elem := reflect.New(fv.Type().Elem()).Elem()
		n, err := decodeValue(b, f, typ, elem, depth)
		if n >= 0 && err == nil {
			fv.Set(reflect.Append(fv, elem))
		}
		return n, err
	case f.opt:
		v := reflect.New(fv.Type().Elem())
		n, err := decodeValue(b, f, typ, v.Elem(), depth)
		if n >= 0 && err == nil {
			fv.Set(v)
		}
		return n, err
	default:
		return decodeValue(b, f, typ, fv, depth)
	}
}

// decodeEntry decodes a map entry: its key (field 1) and value (field 2);
// either may be missing (zero).
func decodeEntry(b []byte, f *field, key, val reflect.Value, depth int) error {
	return eachField(b, depth, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return decodeValue(b, f.mapKey, typ, key, depth)
		case 2:
			return decodeValue(b, f.mapVal, typ, val, depth)
		}
		return -1, nil
	})
}

// decodeValue decodes one value of f into v.
func decodeValue(b []byte, f *field, typ protowire.Type, v reflect.Value, depth int) (int, error) {
	switch f.kind {
	case kindVarint:
		if typ != protowire.VarintType {
			return -1, nil
		}
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		v.Set(varintValue(f.goKind, v.Type(), x))
		return n, nil
	case kindString, kindBytes:
		if typ != protowire.BytesType {
			return -1, nil
		}
		s, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if f.kind == kindBytes {
			v.SetBytes(append(make([]byte, 0, len(s)), s...))
			return n, nil
		}
		if !utf8.Valid(s) {
			return 0, errInvalidUTF8
		}
		v.SetString(string(s))
		return n, nil
	case kindMessage:
		if typ != protowire.BytesType {
			return -1, nil
		}
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return n, decodeMessage(m, f.msg, v.Elem(), depth+1)
	}
	return -1, nil
}

// varintValue is x as a value of Go type t (of kind k), truncated as
// protobuf-go truncates it.
func varintValue(k reflect.Kind, t reflect.Type, x uint64) reflect.Value {
	v := reflect.New(t).Elem()
	switch k {
	case reflect.Bool:
		v.SetBool(x != 0)
	case reflect.Int32:
		v.SetInt(int64(int32(x)))
	case reflect.Int64:
		v.SetInt(int64(x))
	case reflect.Uint32:
		v.SetUint(uint64(uint32(x)))
	default:
		v.SetUint(x)
	}
	return v
}
