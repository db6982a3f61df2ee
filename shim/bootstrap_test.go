package shim

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	bootstrap "github.com/podv2/containerd-shim-pod-v2/api/runtime/bootstrap/v1"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

func mustMarshal(t *testing.T, m any) []byte {
	t.Helper()
	b, err := wire.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStartInput(t *testing.T) {
	opts, err := newAny(&options.Options{BinaryName: "crun", ShimCgroup: "/pods"})
	if err != nil {
		t.Fatal(err)
	}
	legacyOpts := &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: opts.Value}
	params := &bootstrap.BootstrapParams{InstanceID: "c1", Namespace: "k8s.io", ContainerdTtrpcAddress: "/run/c.sock.ttrpc"}
	params.Extensions = append(params.Extensions, &bootstrap.Extension{Value: legacyOpts})
	other := &bootstrap.BootstrapParams{InstanceID: "c2", Namespace: "k8s.io"}

	for _, tc := range []struct {
		name       string
		data       []byte
		wantParams bool
		wantOpts   string // BinaryName decoded from the options, "" if none
	}{
		{"empty (1.6 without options)", nil, false, ""},
		{"options Any (1.6-2.2)", mustMarshal(t, legacyOpts), false, "crun"},
		{"bootstrap params (2.3+)", mustMarshal(t, params), true, "crun"},
		{"bootstrap params for another instance are not ours", mustMarshal(t, other), false, ""},
		{"garbage", []byte("\xff\xff\xff"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := parseStartInput(tc.data, "c1", "k8s.io")
			if (in.params != nil) != tc.wantParams {
				t.Fatalf("params recognised = %v, want %v", in.params != nil, tc.wantParams)
			}
			got := ""
			if in.options != nil {
				var o options.Options
				if err := wire.Unmarshal(in.options.Value, &o); err != nil {
					t.Fatal(err)
				}
				got = o.BinaryName
			}
			if got != tc.wantOpts {
				t.Fatalf("options binary = %q, want %q", got, tc.wantOpts)
			}
		})
	}
}

func TestBootstrapResultRoundTrip(t *testing.T) {
	for _, version := range []int32{2, 3} {
		data, err := bootstrapResult("unix:///run/containerd/s/abc", version)
		if err != nil {
			t.Fatal(err)
		}
		var r bootstrap.BootstrapResult
		if err := wire.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Version != version || r.Address != "unix:///run/containerd/s/abc" || r.Protocol != "ttrpc" {
			t.Fatalf("result = %v", &r)
		}
	}
}

func TestBootstrapVersion(t *testing.T) {
	t.Setenv(BootstrapVersionEnv, "")
	if v := bootstrapVersion(); v != 3 {
		t.Errorf("version = %d, want 3", v)
	}
	t.Setenv(BootstrapVersionEnv, "2")
	if v := bootstrapVersion(); v != 2 {
		t.Errorf("version with %s=2 = %d, want 2", BootstrapVersionEnv, v)
	}
}

func TestTypeName(t *testing.T) {
	for in, want := range map[string]string{
		"containerd.runc.v1.Options":                     "containerd.runc.v1.Options",
		"type.googleapis.com/containerd.runc.v1.Options": "containerd.runc.v1.Options",
		"types.containerd.io/runtimeoptions.v1.Options":  "runtimeoptions.v1.Options",
		"": "",
	} {
		if got := typeName(in); got != want {
			t.Errorf("typeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// newAny packs m in an Any as protobuf-go's anypb.New does.
func newAny(m interface{ ProtoName() string }) (*anypb.Any, error) {
	value, err := wire.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + m.ProtoName(), Value: value}, nil
}
