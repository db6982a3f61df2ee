package task

import (
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

func TestIOOwner(t *testing.T) {
	spec := &specs.Spec{
		Process: &specs.Process{User: specs.User{UID: 1000, GID: 5}},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
		},
	}
	if uid, gid := ioOwner(0, 0, spec); uid != 101000 || gid != 200005 {
		t.Fatalf("owner %d:%d, want 101000:200005", uid, gid)
	}
	if uid, gid := ioOwner(7, 8, spec); uid != 7 || gid != 8 {
		t.Fatalf("options not preferred: %d:%d", uid, gid)
	}
	if uid, gid := ioOwner(0, 0, &specs.Spec{Process: &specs.Process{}}); uid != -1 || gid != -1 {
		t.Fatalf("no user namespace: %d:%d, want -1:-1", uid, gid)
	}
}

func TestOwnPidNamespace(t *testing.T) {
	own := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}
	shared := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}}}}
	host := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
	if !ownPidNamespace(own) || ownPidNamespace(shared) || ownPidNamespace(host) {
		t.Fatal("pid namespace ownership misjudged")
	}
}

func TestDecodeOptions(t *testing.T) {
	value, err := wire.Marshal(&options.Options{BinaryName: "/usr/local/bin/runc", Root: "/tmp/r", SystemdCgroup: true})
	if err != nil {
		t.Fatal(err)
	}
	o, err := decodeOptions(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: value})
	if err != nil {
		t.Fatal(err)
	}
	if o.BinaryName != "/usr/local/bin/runc" || !o.SystemdCgroup || runtimeRoot(o, "k8s.io") != "/tmp/r/k8s.io" {
		t.Fatalf("decoded %v", o)
	}
	if o, err := decodeOptions(nil); err != nil || runtimeRoot(o, "default") != "/run/containerd/runc/default" {
		t.Fatalf("no options: %v %v", o, err)
	}
	_, err = decodeOptions(&anypb.Any{TypeUrl: "example.com/Other", Value: []byte{1}})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown options type: %v, want InvalidArgument", err)
	}
}

func TestDecodeLegacyCreateOptions(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 6, protowire.BytesType) // empty_namespaces: skipped
	b = protowire.AppendString(b, "network")
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	b = protowire.AppendString(b, "/shims")
	b = protowire.AppendTag(b, 10, protowire.VarintType)
	b = protowire.AppendVarint(b, 100000)
	b = protowire.AppendTag(b, 11, protowire.VarintType)
	b = protowire.AppendVarint(b, 100001)
	o, err := decodeOptions(&anypb.Any{TypeUrl: "containerd.linux.runc.CreateOptions", Value: b})
	if err != nil {
		t.Fatal(err)
	}
	if !o.NoPivotRoot || o.ShimCgroup != "/shims" || o.IoUid != 100000 || o.IoGid != 100001 {
		t.Fatalf("decoded %v", o)
	}
	if _, err := decodeOptions(&anypb.Any{TypeUrl: "containerd.linux.runc.CreateOptions", Value: []byte{0x08}}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncated options: %v, want InvalidArgument", err)
	}
}
