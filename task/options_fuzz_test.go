package task

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

func fuzzOptionsSeeds(f *testing.F) {
	runc, _ := wire.Marshal(&options.Options{BinaryName: "/usr/local/bin/runc", Root: "/tmp/r", SystemdCgroup: true, IoUid: 7})
	var legacy []byte
	legacy = protowire.AppendTag(legacy, 1, protowire.VarintType)
	legacy = protowire.AppendVarint(legacy, 1)
	legacy = protowire.AppendTag(legacy, 9, protowire.BytesType)
	legacy = protowire.AppendString(legacy, "/shims")
	legacy = protowire.AppendTag(legacy, 3, protowire.StartGroupType)
	legacy = protowire.AppendTag(legacy, 3, protowire.EndGroupType)
	for _, typeURL := range []string{"", "containerd.runc.v1.Options", "type.googleapis.com/containerd.runc.v1.Options",
		"containerd.linux.runc.CreateOptions", "runtimeoptions.v1.Options", "example.com/Other", "/"} {
		for _, v := range [][]byte{nil, runc, legacy, {0x08}, {0xff, 0xff}} {
			f.Add(typeURL, v)
		}
	}
}

// decodeOptions on any type URL and bytes: no panic, and an error is an
// InvalidArgument.
func FuzzDecodeOptions(f *testing.F) {
	fuzzOptionsSeeds(f)
	f.Fuzz(func(t *testing.T, typeURL string, value []byte) {
		o, err := decodeOptions(&anypb.Any{TypeUrl: typeURL, Value: value})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("decodeOptions(%q, %x): %v, want an InvalidArgument", typeURL, value, err)
			}
			return
		}
		if o == nil {
			t.Fatalf("decodeOptions(%q, %x): no options and no error", typeURL, value)
		}
	})
}

// decodeLegacyCreateOptions on any bytes: no panic. After bytes it decodes,
// the fields the shim reads, appended, are decoded as appended (the last
// occurrence of a field wins, as in protobuf).
func FuzzDecodeLegacyCreateOptions(f *testing.F) {
	f.Add([]byte(nil), true, false, "/shims", uint32(100000), uint32(100001), "/work", "/image")
	f.Add([]byte{0x08, 0x01, 0x4a, 0x01, 'x'}, false, true, "", uint32(0), uint32(1), "", "")
	f.Add([]byte{0x1b, 0x1c}, false, false, "", uint32(0), uint32(0), "", "")
	f.Add([]byte{0x08}, false, false, "", uint32(0), uint32(0), "", "")
	f.Fuzz(func(t *testing.T, prefix []byte, noPivot, noKeyring bool, cgroup string, uid, gid uint32, work, image string) {
		var o options.Options
		if err := decodeLegacyCreateOptions(prefix, &o); err != nil {
			return
		}
		b := append([]byte(nil), prefix...)
		varint := func(num protowire.Number, v uint64) {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
		str := func(num protowire.Number, v string) {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
		varint(1, protowire.EncodeBool(noPivot))
		varint(8, protowire.EncodeBool(noKeyring))
		str(9, cgroup)
		varint(10, uint64(uid))
		varint(11, uint64(gid))
		str(12, work)
		str(13, image)
		var got options.Options
		if err := decodeLegacyCreateOptions(b, &got); err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		want := options.Options{NoPivotRoot: noPivot, NoNewKeyring: noKeyring, ShimCgroup: cgroup, IoUid: uid, IoGid: gid,
			CriuWorkPath: work, CriuImagePath: image}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%x: decoded %v, want %v", b, &got, &want)
		}
	})
}
