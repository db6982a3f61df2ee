package task

import (
	"strings"

	"path/filepath"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
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
