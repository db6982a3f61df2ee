package wire

import (
	"fmt"
	"reflect"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// Marshal returns m's wire format, as proto.MarshalOptions{Deterministic:
// true} would. m is a pointer to a struct with protobuf tags (package api's,
// or protoc-gen-go's); protobuf-go codes a generated message wire does not.
func Marshal(m any) ([]byte, error) {
	v := reflect.ValueOf(m)
	tb := tableOf(v.Type())
	if tb == nil {
		if pm, ok := m.(proto.Message); ok {
			return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
		}
		return nil, fmt.Errorf("wire cannot code %T", m)
	}
	if v.IsNil() {
		return nil, nil
	}
	return appendMessage(nil, tb, v.Elem())
}

// Unmarshal decodes b into m, which it first clears, as proto.Unmarshal
// does; fields of numbers m does not have are dropped (protobuf-go keeps
// them to write them again, which a request or an option never needs).
func Unmarshal(b []byte, m any) error {
	v := reflect.ValueOf(m)
	tb := tableOf(v.Type())
	if tb == nil {
		if pm, ok := m.(proto.Message); ok {
			return proto.Unmarshal(b, pm)
		}
		return fmt.Errorf("wire cannot code %T", m)
	}
	reset(tb, v.Elem())
	return decodeMessage(b, tb, v.Elem(), 0)
}

// Message returns m as a message that protobuf-go (proto.Marshal and
// proto.Unmarshal, as ttrpc calls them) codes through wire: its fast paths
// (protoiface.Methods) are wire's. A generated message wire does not code
// is returned as it is; any other type wire does not code is a programming
// error (a panic).
func Message(m any) proto.Message {
	v := reflect.ValueOf(m)
	tb := tableOf(v.Type())
	if tb == nil {
		if pm, ok := m.(proto.Message); ok {
			return pm
		}
		panic(fmt.Sprintf("wire cannot code %T", m))
	}
	if v.IsNil() {
		return nil
	}
	return &message{v: v.Elem(), tb: tb}
}

// message is a message (a struct of package api's, or protoc-gen-go's) seen
// through wire, as a protobuf-go message. protobuf-go reaches it
// only through Interface, IsValid, ProtoMethods and Reset: the other methods
// of protoreflect.Message (the embedded nil interface) are never called for a
// message whose fast paths code it whole.
type message struct {
	protoreflect.Message
	v  reflect.Value // the struct
	tb *table
}

func (m *message) ProtoReflect() protoreflect.Message   { return m }
func (m *message) Interface() protoreflect.ProtoMessage { return m }
func (m *message) IsValid() bool                        { return true }
func (m *message) ProtoMethods() *protoiface.Methods    { return &methods }
func (m *message) Reset()                               { reset(m.tb, m.v) }

var methods = protoiface.Methods{
	Flags: protoiface.SupportMarshalDeterministic | protoiface.SupportUnmarshalDiscardUnknown,
	Marshal: func(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
		m := in.Message.(*message)
		b, err := appendMessage(in.Buf, m.tb, m.v)
		return protoiface.MarshalOutput{Buf: b}, err
	},
	Unmarshal: func(in protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error) {
		m := in.Message.(*message)
		err := decodeMessage(in.Buf, m.tb, m.v, 0)
		return protoiface.UnmarshalOutput{Flags: protoiface.UnmarshalInitialized}, err
	},
	CheckInitialized: func(protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
		return protoiface.CheckInitializedOutput{}, nil // proto3: nothing is required
	},
}

// reset clears the fields of message v (the generated struct's own state is
// left alone: protobuf-go's is not used for it).
func reset(tb *table, v reflect.Value) {
	for i := range tb.fields {
		fv := v.Field(tb.fields[i].index)
		fv.Set(reflect.Zero(fv.Type()))
	}
}
