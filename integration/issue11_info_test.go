package integration

import (
	"encoding/json"
	"slices"
	"testing"

	apitypes "github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// infoFeatures runs `-info` with the options on stdin (nil: none) and returns the features it reports.
func infoFeatures(t *testing.T, bin string, opts proto.Message, typeURL string) *features.Features {
	t.Helper()
	var stdin []byte
	if opts != nil {
		v, err := proto.Marshal(opts)
		if err != nil {
			t.Fatal(err)
		}
		if stdin, err = proto.Marshal(&anypb.Any{TypeUrl: typeURL, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := runShim(t, bin, stdin, "-info")
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(out, &info); err != nil {
		t.Fatalf("-info: not a RuntimeInfo: %v: %q", err, out)
	}
	var f features.Features
	if err := json.Unmarshal(info.GetFeatures().GetValue(), &f); err != nil {
		t.Fatalf("-info: features are not JSON: %v: %q", err, info.GetFeatures().GetValue())
	}
	return &f
}

func idmapEnabled(f *features.Features) bool {
	return f.Linux != nil && f.Linux.MountExtensions != nil && f.Linux.MountExtensions.IDMap != nil &&
		f.Linux.MountExtensions.IDMap.Enabled != nil && *f.Linux.MountExtensions.IDMap.Enabled
}

// Issue 11, "Honest -info": what -info reports is what containerd 2.2.7+ lets Kubernetes run on the handler. With
// Debian's runc 1.1.5 (no id-mapped mounts of its own) the shim makes id-mapped mounts itself, so -info says
// linux.mountExtensions.idmap.enabled, next to runc's user namespace and rro; with runc 1.4 it is runc's own word;
// with a runtime whose features lack rro, rro is not reported. The runtime is named by runc options, and by the
// TOML config that CRI passes to a runtime_type that is not runc's (runtimeoptions.v1.Options ConfigBody).
func TestInfoReportsIDMapAndRRO(t *testing.T) {
	if !harness.IsOurs(harness.Runtime()) {
		t.Fatalf("-info's adjusted features are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
	}
	bin := harness.ShimPath(t)
	noRRO := harness.FaultyRunc(t, "no-rro")
	runc14 := harness.Runc14(t)
	const runcURL, genericURL = "containerd.runc.v1.Options", "runtimeoptions.v1.Options"
	cases := []struct {
		name      string
		opts      proto.Message
		typeURL   string
		wantRRO   bool
		wantIDMap bool
	}{
		{"runc 1.1.5 (default)", nil, "", true, true},
		{"runc 1.1.5 by runc options", &runcoptions.Options{BinaryName: "/usr/sbin/runc"}, runcURL, true, true},
		{"runc 1.4", &runcoptions.Options{BinaryName: runc14}, runcURL, true, true},
		{"runtime without rro", &runcoptions.Options{BinaryName: noRRO}, runcURL, false, true},
		{"runtime without rro by CRI's config body", &runtimeoptions.Options{ConfigBody: []byte("BinaryName = '" + noRRO + "'\n")}, genericURL, false, true},
	}
	for _, tc := range cases {
		f := infoFeatures(t, bin, tc.opts, tc.typeURL)
		rro := slices.Contains(f.MountOptions, "rro")
		userns := f.Linux != nil && slices.Contains(f.Linux.Namespaces, "user")
		if rro != tc.wantRRO || idmapEnabled(f) != tc.wantIDMap || !userns {
			t.Errorf("%s: -info reports rro %v, idmap %v, user namespace %v; want %v, %v, true", tc.name, rro, idmapEnabled(f), userns, tc.wantRRO, tc.wantIDMap)
		}
		if len(f.MountOptions) < 10 || f.OCIVersionMax == "" || len(f.Hooks) == 0 {
			t.Errorf("%s: the runtime's other features are lost: %+v", tc.name, f)
		}
	}
}
