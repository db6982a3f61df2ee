package shim

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	bootstrap "github.com/podv2/containerd-shim-pod-v2/api/runtime/bootstrap/v1"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// parseStartInput on any stdin: no panic; BootstrapParams are recognised
// only when they name the instance and namespace of the flags; options found
// are runtime options.
func FuzzParseStartInput(f *testing.F) {
	opts, _ := newAny(&options.Options{BinaryName: "crun"})
	legacy := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: opts.Value}
	params := &bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "k8s.io", ContainerdTtrpcAddress: "/run/c.sock.ttrpc"}
	params.Extensions = append(params.Extensions, &bootstrap.Extension{Value: legacy})
	for _, data := range [][]byte{nil, mustMarshalF(legacy), mustMarshalF(params), []byte("\xff\xff\xff"),
		mustMarshalF(&bootstrap.BootstrapParams{InstanceID: "c2", Namespace: "k8s.io"})} {
		f.Add(data, "c1", "k8s.io")
		f.Add(data, "", "")
	}
	f.Fuzz(func(t *testing.T, data []byte, id, namespace string) {
		in := parseStartInput(data, id, namespace)
		if in.params != nil && (in.params.InstanceID != id || in.params.Namespace != namespace) {
			t.Fatalf("recognised params for %q in %q, the flags say %q in %q",
				in.params.InstanceID, in.params.Namespace, id, namespace)
		}
		if in.options != nil && !isRuntimeOptions(in.options.GetTypeUrl()) {
			t.Fatalf("options of type %q taken as runtime options", in.options.GetTypeUrl())
		}
		// The same params, marshalled, are recognised.
		mine := &bootstrap.BootstrapParams{InstanceID: id, Namespace: namespace, ContainerdGrpcAddress: string(data)}
		b, err := wire.Marshal(mine)
		if err != nil {
			return // not valid UTF-8: containerd cannot send it either
		}
		if len(b) > 0 && parseStartInput(b, id, namespace).params == nil {
			t.Fatalf("params for %q in %q not recognised", id, namespace)
		}
	})
}

func mustMarshalF(m any) []byte {
	b, err := wire.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
