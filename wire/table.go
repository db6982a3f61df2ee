// Package wire codes containerd's API messages in protobuf's binary format,
// read from the protobuf tags of their Go structs: package api's plain
// structs, which the shim uses, or the ones protoc-gen-go generates (which
// tests compare them with). It serves them to ttrpc through protobuf-go's
// fast-path hooks (Message, Method), without protobuf-go's reflection.
//
// protobuf-go codes a generated message through tables it builds on the
// message's first use: the full descriptor of its .proto file, then a coder
// per field. A shim uses a few dozen message types in a pod's life, and
// those tables stayed in its heap for good: about 0.3 MB of a polled shim's
// 0.85 MB of live objects, spread over as many object sizes, each of which
// holds a span and the runtime's sweep bookkeeping. wire keeps, per message
// type, one small table of its fields (number, encoding, struct index).
//
// It codes what these APIs use: scalars (bool, int32 and enums, int64,
// uint32, uint64), strings, bytes, nested messages, repeated fields of those
// (scalars packed), proto3 optional scalars and maps with string keys. A
// generated type with anything else (oneofs, floats, zigzag or fixed
// encodings, proto2 defaults, groups) is left to protobuf-go: Message returns
// it as it is, and Marshal and Unmarshal call protobuf-go for it.
package wire

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// kind is how a field's values are coded.
type kind uint8

const (
	kindVarint  kind = iota + 1 // bool, int32 (and enums), int64, uint32, uint64
	kindString                  // string, UTF-8 checked as proto3 does
	kindBytes                   // []byte
	kindMessage                 // pointer to a generated struct
)

// field is one field of a message.
type field struct {
	num    protowire.Number
	index  int // in the Go struct
	kind   kind
	goKind reflect.Kind // kindVarint: which Go integer (or bool)
	rep    bool         // a slice (a repeated field)
	opt    bool         // a pointer to a scalar: proto3 optional, written when set
	msg    *table       // kindMessage: the element's table
	// Maps: entries are messages of a key (field 1) and a value (field 2).
	mapKey, mapVal *field
}

// table is a message type's fields in field-number order.
type table struct {
	typ    reflect.Type // the struct (not the pointer)
	fields []field
}

var (
	tablesMu sync.Mutex
	// tables holds every message type met: its table, or nil when wire
	// does not code it. Guarded by tablesMu; a table never changes once
	// stored, so a reader may keep it.
	tables = map[reflect.Type]*table{}
)

// tableOf returns the table of t (a pointer to a generated struct), or nil
// when wire does not code that type.
func tableOf(t reflect.Type) *table {
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	tablesMu.Lock()
	defer tablesMu.Unlock()
	if tb, ok := tables[t.Elem()]; ok {
		return tb
	}
	building := map[reflect.Type]*table{}
	if _, err := build(t.Elem(), building); err != nil {
		// A refusal is kept for t alone: the types built along the way
		// may contain the one refused, and are built again when met on
		// their own.
		tables[t.Elem()] = nil
		return nil
	}
	for typ, b := range building {
		tables[typ] = b
	}
	return tables[t.Elem()]
}

// build makes the table of struct type st and of every message type it
// contains. building holds the tables under construction (a message may
// contain itself). Called with tablesMu held.
func build(st reflect.Type, building map[reflect.Type]*table) (*table, error) {
	if tb, ok := tables[st]; ok {
		if tb == nil {
			return nil, fmt.Errorf("%s: not coded by wire", st)
		}
		return tb, nil
	}
	if tb, ok := building[st]; ok {
		return tb, nil
	}
	tb := &table{typ: st}
	building[st] = tb
	for i := 0; i < st.NumField(); i++ {
		sf := st.Field(i)
		if _, ok := sf.Tag.Lookup("protobuf_oneof"); ok {
			return nil, fmt.Errorf("%s.%s: oneof", st, sf.Name)
		}
		tag, ok := sf.Tag.Lookup("protobuf")
		if !ok {
			continue // the generated struct's own state
		}
		f, err := parseField(sf, tag, building)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", st, sf.Name, err)
		}
		f.index = i
		tb.fields = append(tb.fields, f)
	}
	// protobuf-go writes fields by number; so does wire.
	slices.SortFunc(tb.fields, func(a, b field) int { return cmp.Compare(a.num, b.num) })
	return tb, nil
}

// parseField reads a field's protobuf tag ("bytes,3,rep,name=rootfs,proto3")
// against its Go type.
func parseField(sf reflect.StructField, tag string, building map[reflect.Type]*table) (field, error) {
	parts := strings.Split(tag, ",")
	if len(parts) < 3 {
		return field{}, fmt.Errorf("tag %q", tag)
	}
	num, err := strconv.Atoi(parts[1])
	if err != nil || num < 1 || num > int(protowire.MaxValidNumber) {
		return field{}, fmt.Errorf("tag %q: field number", tag)
	}
	f := field{num: protowire.Number(num), rep: parts[2] == "rep"}
	t := sf.Type
	for _, p := range parts[3:] {
		switch {
		case p == "oneof" && t.Kind() == reflect.Pointer && t.Elem().Kind() != reflect.Struct:
			// proto3 optional: a oneof of its own, with presence.
			f.opt, t = true, t.Elem()
		case p == "oneof", strings.HasPrefix(p, "def="):
			return field{}, fmt.Errorf("tag %q: %s", tag, p)
		}
	}
	if t.Kind() == reflect.Map {
		key, kerr := parseValue(t.Key(), sf.Tag.Get("protobuf_key"), building)
		val, verr := parseValue(t.Elem(), sf.Tag.Get("protobuf_val"), building)
		if kerr != nil || verr != nil || key.kind != kindString {
			return field{}, fmt.Errorf("map %s: not coded by wire", t)
		}
		key.num, val.num = 1, 2
		f.kind, f.mapKey, f.mapVal = kindMessage, &key, &val
		return f, nil
	}
	if f.rep {
		if t.Kind() != reflect.Slice || t.Elem().Kind() == reflect.Uint8 {
			return field{}, fmt.Errorf("repeated field of type %s", t)
		}
		t = t.Elem()
	}
	v, err := parseValue(t, tag, building)
	if err != nil {
		return field{}, err
	}
	f.kind, f.goKind, f.msg = v.kind, v.goKind, v.msg
	return f, nil
}

// parseValue is the kind of one value of Go type t, coded as the tag says.
func parseValue(t reflect.Type, tag string, building map[reflect.Type]*table) (field, error) {
	enc, _, _ := strings.Cut(tag, ",")
	switch {
	case enc == "varint" && isVarint(t.Kind()):
		return field{kind: kindVarint, goKind: t.Kind()}, nil
	case enc == "bytes" && t.Kind() == reflect.String:
		return field{kind: kindString}, nil
	case enc == "bytes" && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return field{kind: kindBytes}, nil
	case enc == "bytes" && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		tb, err := build(t.Elem(), building)
		if err != nil {
			return field{}, err
		}
		return field{kind: kindMessage, msg: tb}, nil
	}
	return field{}, fmt.Errorf("%s coded as %q: not coded by wire", t, enc)
}

func isVarint(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int32, reflect.Int64, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}
