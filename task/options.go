package task

import (
	"strings"

	"path/filepath"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// defaultRuntimeRoot is the runtime's state root, as the reference shim uses it.
const defaultRuntimeRoot = "/run/containerd/runc"

// decodeOptions reads the options Any of a Create: containerd.runc.v1.Options,
// or CRI's runtimeoptions.v1.Options (whose config body is the runtime's own
// and is not read by the shim). No options is the defaults.
func decodeOptions(a *anypb.Any) (*options.Options, error) {
	o := &options.Options{}
	if a == nil || a.GetTypeUrl() == "" {
		return o, nil
	}
	switch name := typeName(a.GetTypeUrl()); name {
	case "containerd.runc.v1.Options":
		if err := proto.Unmarshal(a.GetValue(), o); err != nil {
			return nil, invalid("decode runtime options %s: %v", name, err)
		}
	case "containerd.linux.runc.CreateOptions":
		// What containerd's client sends a runtime whose name is not
		// io.containerd.runc.*: the v1 Linux runtime's options.
		if err := decodeLegacyCreateOptions(a.GetValue(), o); err != nil {
			return nil, invalid("decode runtime options %s: %v", name, err)
		}
	case "runtimeoptions.v1.Options":
		var ro runtimeoptions.Options
		if err := proto.Unmarshal(a.GetValue(), &ro); err != nil {
			return nil, invalid("decode runtime options %s: %v", name, err)
		}
	default:
		return nil, invalid("unsupported runtime options type %q (want containerd.runc.v1.Options)", a.GetTypeUrl())
	}
	return o, nil
}

// runtimeRoot is where the runtime keeps state for this namespace.
func runtimeRoot(o *options.Options, namespace string) string {
	root := defaultRuntimeRoot
	if o.Root != "" {
		root = o.Root
	}
	return filepath.Join(root, namespace)
}

func typeName(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, "/")+1:]
}

// decodeLegacyCreateOptions reads the fields of containerd.linux.runc.CreateOptions
// that mean something to this shim. The message is not in containerd's API
// module, so its wire format is read directly.
func decodeLegacyCreateOptions(b []byte, o *options.Options) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var str string
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			var raw []byte
			raw, n = protowire.ConsumeBytes(b)
			str = string(raw)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			o.NoPivotRoot = v != 0
		case 8:
			o.NoNewKeyring = v != 0
		case 9:
			o.ShimCgroup = str
		case 10:
			o.IoUid = uint32(v)
		case 11:
			o.IoGid = uint32(v)
		case 12:
			o.CriuWorkPath = str
		case 13:
			o.CriuImagePath = str
		}
	}
	return nil
}
