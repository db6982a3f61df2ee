package wire

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	_ "github.com/containerd/containerd/api/events"
	bootstrapapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	_ "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	_ "github.com/containerd/containerd/api/types"
	_ "github.com/containerd/containerd/api/types/runc/options"
	_ "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	_ "google.golang.org/protobuf/types/known/emptypb"
	_ "google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/podv2/containerd-shim-pod-v2/api/all"

	_ "github.com/podv2/containerd-shim-pod-v2/sandbox/api"
)

// The protos whose messages the shim codes: every message of these
// packages must be coded by wire, byte for byte as protobuf-go does.
var shimPackages = []string{
	"containerd.task.v2.",
	"containerd.events.",
	"containerd.services.images.v1.", // image events, in containerd's events package
	"containerd.v1.types.",
	"containerd.services.events.ttrpc.v1.",
	"containerd.types.",
	"containerd.runc.v1.",
	"containerd.runtime.bootstrap.v1.",
	"runtimeoptions.v1.",
	"containerd_shim_pod_v2.sandbox.v1.",
	"google.protobuf.Any",
	"google.protobuf.Timestamp",
	"google.protobuf.Empty",
	"google.protobuf.StringValue",
}

func shimMessages(t *testing.T) []protoreflect.MessageType {
	var out []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		for _, p := range shimPackages {
			if strings.HasPrefix(name, p) {
				out = append(out, mt)
				break
			}
		}
		return true
	})
	if len(out) < 60 {
		t.Fatalf("only %d messages found in the shim's packages", len(out))
	}
	return out
}

// fill sets every field of m to a value that is not its zero (nested
// messages to depth 3, two elements per repeated field, map entries with
// an empty value too), seeded so that fields differ.
func fill(m protoreflect.Message, depth int, seed *int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		*seed++
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j, v := range []string{fmt.Sprintf("v%d", *seed), ""} {
				key := protoreflect.ValueOfString(fmt.Sprintf("k%d-%d", *seed, j)).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					val := mp.NewValue()
					if depth < 3 {
						fill(val.Message(), depth+1, seed)
					}
					mp.Set(key, val)
					continue
				}
				mp.Set(key, scalar(fd.MapValue(), *seed, v))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					if depth < 3 {
						e := l.NewElement()
						fill(e.Message(), depth+1, seed)
						l.Append(e)
					}
					continue
				}
				l.Append(scalar(fd, *seed+j, fmt.Sprintf("r%d-%d", *seed, j)))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 3 {
				fill(m.Mutable(fd).Message(), depth+1, seed)
			}
		default:
			m.Set(fd, scalar(fd, *seed, fmt.Sprintf("s%d", *seed)))
		}
	}
}

// scalar is a value of fd's kind: negative for signed integers (int32 is
// sign-extended on the wire), past 32 bits for 64-bit ones.
func scalar(fd protoreflect.FieldDescriptor, seed int, s string) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(1 + seed%2))
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(-seed))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(-int64(seed) << 33)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(math.MaxUint32 - uint32(seed))
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(math.MaxUint64 - uint64(seed))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s + "-é")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, byte(seed), 0xff})
	}
	panic(fmt.Sprintf("no test value for %s (%s)", fd.FullName(), fd.Kind()))
}

// TestCodesAsProtobufDoes is the oracle: for every message of the shim's
// protos, empty and filled, wire writes what protobuf-go's deterministic
// Marshal writes, and decodes it back to an equal message, directly and
// through Message as ttrpc's calls to proto.Marshal and proto.Unmarshal
// reach it.
func TestCodesAsProtobufDoes(t *testing.T) {
	seed := 0
	for _, mt := range shimMessages(t) {
		name := string(mt.Descriptor().FullName())
		if tableOf(reflect.TypeOf(mt.New().Interface())) == nil {
			t.Errorf("%s: not coded by wire", name)
			continue
		}
		filled := mt.New()
		fill(filled, 0, &seed)
		for _, m := range []proto.Message{mt.New().Interface(), filled.Interface()} {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				t.Fatalf("%s: protobuf-go: %v", name, err)
			}
			got, err := Marshal(m)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: Marshal = %x, %v\nprotobuf-go writes %x", name, got, err, want)
				continue
			}
			viaProto, err := proto.Marshal(Message(m))
			if err != nil || !bytes.Equal(viaProto, want) {
				t.Errorf("%s: proto.Marshal(Message) = %x, %v\nwant %x", name, viaProto, err, want)
			}
			back := mt.New().Interface()
			if err := Unmarshal(want, back); err != nil || !proto.Equal(back, m) {
				t.Errorf("%s: Unmarshal: %v\n got %v\nwant %v", name, err, back, m)
			}
			back = mt.New().Interface()
			if err := proto.Unmarshal(want, Message(back)); err != nil || !proto.Equal(back, m) {
				t.Errorf("%s: proto.Unmarshal(Message): %v\n got %v\nwant %v", name, err, back, m)
			}
		}
	}
}

// TestDecodesWhatProtobufAccepts feeds inputs protobuf-go's Marshal does not
// write but its Unmarshal reads (fields out of order or repeated, repeated
// scalars unpacked, unknown numbers, wire types a field does not take), and
// broken ones: wire decodes each as protobuf-go does, or fails where it fails.
func TestDecodesWhatProtobufAccepts(t *testing.T) {
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	str := func(b []byte, num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(b, num, protowire.BytesType), s)
	}
	varint := func(b []byte, num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(b, num, protowire.VarintType), v)
	}
	mount := func(typ string) []byte { return str(nil, 1, typ) }
	var unpacked []byte // BootstrapResult.capabilities (4), one varint per element
	unpacked = varint(unpacked, 4, 1)
	unpacked = varint(unpacked, 4, 2)
	for _, tc := range []struct {
		name  string
		msg   func() proto.Message
		input []byte
		fails bool
	}{
		{"out of order, a scalar met twice", func() proto.Message { return &taskapi.CreateTaskRequest{} },
			str(str(varint(str(nil, 2, "/bundle"), 4, 1), 1, "c1"), 2, "/bundle2"), false},
		{"repeated messages appended", func() proto.Message { return &taskapi.CreateTaskRequest{} },
			protowire.AppendBytes(tag(protowire.AppendBytes(tag(nil, 3, protowire.BytesType), mount("overlay")), 3, protowire.BytesType), mount("bind")), false},
		{"a singular message met twice merges", func() proto.Message { return &taskapi.CreateTaskRequest{} },
			protowire.AppendBytes(tag(protowire.AppendBytes(tag(nil, 10, protowire.BytesType), str(nil, 1, "type.example/x")), 10, protowire.BytesType), protowire.AppendBytes(tag(nil, 2, protowire.BytesType), []byte{1, 2})), false},
		{"unknown numbers and wire types skipped", func() proto.Message { return &taskapi.StartRequest{} },
			varint(protowire.AppendFixed32(tag(str(varint(nil, 99, 7), 1, "c1"), 77, protowire.Fixed32Type), 5), 1, 3), false},
		{"repeated scalars unpacked", func() proto.Message { return &bootstrapapi.BootstrapResult{} }, unpacked, false},
		{"map entry without value", func() proto.Message { return &taskapi.UpdateTaskRequest{} },
			protowire.AppendBytes(tag(nil, 3, protowire.BytesType), str(nil, 1, "k")), false},
		{"truncated", func() proto.Message { return &taskapi.StartRequest{} }, str(nil, 1, "c1")[:3], true},
		{"invalid UTF-8 in a string", func() proto.Message { return &taskapi.StartRequest{} }, str(nil, 1, "\xff"), true},
		{"field number 0", func() proto.Message { return &taskapi.StartRequest{} }, []byte{0x02, 0x00}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, got := tc.msg(), tc.msg()
			werr := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(tc.input, want)
			gerr := Unmarshal(tc.input, got)
			if (werr != nil) != tc.fails || (gerr != nil) != tc.fails {
				t.Fatalf("errors: protobuf-go %v, wire %v (want failure: %v)", werr, gerr, tc.fails)
			}
			if !tc.fails && !proto.Equal(got, want) {
				t.Fatalf("wire decoded %v, protobuf-go %v", got, want)
			}
		})
	}
}

// TestLeavesOtherTypesToProtobuf: a type wire does not code (a double here)
// is coded by protobuf-go, through Marshal, Unmarshal and Message alike.
func TestLeavesOtherTypesToProtobuf(t *testing.T) {
	m := wrapperspb.Double(2.5)
	if Message(m) != proto.Message(m) {
		t.Fatal("Message wrapped a type wire does not code")
	}
	b, err := Marshal(m)
	want, _ := proto.Marshal(m)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("Marshal = %x, %v; want %x", b, err, want)
	}
	var back wrapperspb.DoubleValue
	if err := Unmarshal(b, &back); err != nil || back.GetValue() != 2.5 {
		t.Fatalf("Unmarshal = %v, %v", back.GetValue(), err)
	}
}

// TestUnmarshalClears: decoding into a message that holds fields clears them
// first, as proto.Unmarshal does (through Message too).
func TestUnmarshalClears(t *testing.T) {
	b, _ := proto.Marshal(&taskapi.StartRequest{ID: "c1"})
	for _, m := range []*taskapi.StartRequest{{ExecID: "e1"}, {ExecID: "e2"}} {
		var err error
		if m.ExecID == "e1" {
			err = Unmarshal(b, m)
		} else {
			err = proto.Unmarshal(b, Message(m))
		}
		if err != nil || m.ID != "c1" || m.ExecID != "" {
			t.Fatalf("after decoding: %v, %v", m, err)
		}
	}
}

// TestAPIStructsCodeAsTheirProtos: each of package api's structs codes, byte
// for byte, as the protoc-gen-go message it mirrors: protobuf-go's bytes of
// the message with every field set decode into the struct and encode back
// the same.
func TestAPIStructsCodeAsTheirProtos(t *testing.T) {
	seed := 0
	seen := 0
	for _, mt := range shimMessages(t) {
		name := string(mt.Descriptor().FullName())
		nilPtr, ok := all.Messages[name]
		if !ok {
			continue // a well-known type the shim does not use
		}
		seen++
		filled := mt.New()
		fill(filled, 0, &seed)
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(filled.Interface())
		if err != nil {
			t.Fatal(err)
		}
		ours := reflect.New(reflect.TypeOf(nilPtr).Elem()).Interface()
		if err := Unmarshal(want, ours); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got, err := Marshal(ours)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: api's struct writes %x, %v\nthe proto's message %x", name, got, err, want)
		}
		if n := ours.(interface{ ProtoName() string }).ProtoName(); n != name {
			t.Errorf("%T.ProtoName() = %q, want %q", ours, n, name)
		}
	}
	if seen != len(all.Messages) {
		t.Errorf("checked %d of package api's %d messages", seen, len(all.Messages))
	}
}

// TestRefusesInvalidUTF8 in a string, as protobuf-go's Marshal does.
func TestRefusesInvalidUTF8(t *testing.T) {
	m := &taskapi.StartRequest{ID: "\xff"}
	if _, err := proto.Marshal(m); err == nil {
		t.Fatal("protobuf-go accepted invalid UTF-8")
	}
	if _, err := Marshal(m); err == nil {
		t.Fatal("wire accepted invalid UTF-8")
	}
}
