package shim

import (
	"os"
	"strings"

	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	bootstrap "github.com/podv2/containerd-shim-pod-v2/api/runtime/bootstrap/v1"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// startInput is what `start` read on stdin.
type startInput struct {
	params  *bootstrap.BootstrapParams // containerd 2.3+, else nil
	options *anypb.Any                 // runtime options, may be nil
}

// parseStartInput tells the two forms of stdin apart. containerd 2.3+ sends
// BootstrapParams; older ones send the runtime options Any, or nothing. Both
// are protobuf, so a BootstrapParams is recognised only if it parses and names
// the same instance and namespace as the flags.
func parseStartInput(data []byte, id, namespace string) startInput {
	if len(data) == 0 {
		return startInput{}
	}
	var params bootstrap.BootstrapParams
	if err := wire.Unmarshal(data, &params); err == nil && params.InstanceID == id && params.Namespace == namespace {
		in := startInput{params: &params}
		for _, ext := range params.Extensions {
			if ext.GetValue() != nil && isRuntimeOptions(ext.GetValue().GetTypeUrl()) {
				in.options = ext.GetValue()
				break
			}
		}
		return in
	}
	var opts anypb.Any
	if err := wire.Unmarshal(data, &opts); err == nil && isRuntimeOptions(opts.GetTypeUrl()) {
		return startInput{options: &opts}
	}
	return startInput{}
}

func isRuntimeOptions(typeURL string) bool {
	switch typeName(typeURL) {
	case "containerd.runc.v1.Options", "runtimeoptions.v1.Options":
		return true
	}
	return false
}

// typeName is the message name of a type URL ("type.googleapis.com/x.Y" -> "x.Y").
func typeName(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, "/")+1:]
}

// BootstrapVersionEnv, set to 2 in containerd's environment, makes the shim
// answer containerd 2.3+ with bootstrap version 2, as it answers older ones:
// containerd then runs `start` for each container of a sandbox. It is there
// to test that path under containerd 2.4, and as a way back.
const BootstrapVersionEnv = "CONTAINERD_SHIM_POD_V2_BOOTSTRAP_VERSION"

// bootstrapVersion is the version the shim answers containerd 2.3+ with: 3,
// unless BootstrapVersionEnv says 2. With 3 containerd runs no `start` per
// container of a shim sandbox: it connects each to the sandbox's socket and
// speaks task API v3. containerd 1.7 refuses 3, and 2.0-2.2 cannot be told
// from it (same stdin): they get a plain address, which is version 2.
func bootstrapVersion() int32 {
	if os.Getenv(BootstrapVersionEnv) == "2" {
		return 2
	}
	return 3
}

// bootstrapResult is the answer to containerd 2.3+.
func bootstrapResult(address string, version int32) ([]byte, error) {
	return wire.Marshal(&bootstrap.BootstrapResult{Version: version, Address: address, Protocol: "ttrpc"})
}
