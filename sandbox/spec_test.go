package sandbox

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// podSpec marshals to what specs.Spec with the same fields set marshals to:
// containerd (and NRI) read it as an OCI spec.
func TestPodSpecIsAnOCISpec(t *testing.T) {
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	nss := []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "/proc/7/ns/user"}, {Type: specs.PIDNamespace, Path: "/proc/7/ns/pid"}}
	for name, tc := range map[string]struct {
		pod podSpec
		oci specs.Spec
	}{
		"bare": {
			podSpec{Version: specs.Version, Linux: &podSpecLinux{}},
			specs.Spec{Version: specs.Version, Linux: &specs.Linux{}},
		},
		"full": {
			podSpec{Version: specs.Version, Hostname: "web", Annotations: map[string]string{"a": "b"}, Linux: &podSpecLinux{
				UIDMappings: ids, GIDMappings: ids, Sysctl: map[string]string{"net.ipv4.ip_forward": "1"},
				CgroupsPath: "/kubepods/pod1/sb", Namespaces: nss,
			}},
			specs.Spec{Version: specs.Version, Hostname: "web", Annotations: map[string]string{"a": "b"}, Linux: &specs.Linux{
				UIDMappings: ids, GIDMappings: ids, Sysctl: map[string]string{"net.ipv4.ip_forward": "1"},
				CgroupsPath: "/kubepods/pod1/sb", Namespaces: nss,
			}},
		},
	} {
		got, err := json.Marshal(&tc.pod)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(&tc.oci)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: pod spec\n%s\nOCI spec\n%s", name, got, want)
		}
		var back specs.Spec
		if err := json.Unmarshal(got, &back); err != nil || back.Linux == nil || back.Linux.CgroupsPath != tc.oci.Linux.CgroupsPath {
			t.Errorf("%s: read back as an OCI spec: %+v, %v", name, back.Linux, err)
		}
	}
}
