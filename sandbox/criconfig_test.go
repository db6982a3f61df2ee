package sandbox

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The wire decoder reads what k8s.io/cri-api marshals (the test alone
// links it).
func TestDecodePodSandboxConfig(t *testing.T) {
	in := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "web", Uid: "u-1", Namespace: "default", Attempt: 2},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/x",
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"svc.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080}},
		Labels:       map[string]string{"app": "web"},
		Annotations:  map[string]string{"a": "b", "c": ""},
		Linux: &runtime.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod-u-1",
			SecurityContext: &runtime.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtime.NamespaceOption{
					Network: runtime.NamespaceMode_POD,
					Pid:     runtime.NamespaceMode_NODE,
					Ipc:     runtime.NamespaceMode_POD,
					UsernsOptions: &runtime.UserNamespace{
						Mode: runtime.NamespaceMode_POD,
						Uids: []*runtime.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}},
						Gids: []*runtime.IDMapping{{HostId: 200000, ContainerId: 0, Length: 65536}},
					},
				},
				Privileged:         true,
				RunAsUser:          &runtime.Int64Value{Value: 1000},
				Seccomp:            &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
				ReadonlyRootfs:     true,
				SupplementalGroups: []int64{1, 2},
			},
			Sysctls:   map[string]string{"net.core.somaxconn": "1024"},
			Overhead:  &runtime.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 1 << 20},
			Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20, CpusetCpus: "0"},
		},
	}
	data, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePodSandboxConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &podSandboxConfig{
		Name: "web", UID: "u-1", Namespace: "default",
		Hostname:     "web-0",
		DNS:          dnsConfig{Servers: []string{"10.0.0.10", "10.0.0.11"}, Searches: []string{"svc.local"}, Options: []string{"ndots:5"}},
		Labels:       map[string]string{"app": "web"},
		Annotations:  map[string]string{"a": "b", "c": ""},
		CgroupParent: "/kubepods/pod-u-1",
		Sysctls:      map[string]string{"net.core.somaxconn": "1024"},
		NetworkMode:  modePod, PIDMode: modeNode, IPCMode: modePod,
		Userns: &usernsOptions{Mode: modePod,
			UIDs: []idMapping{{HostID: 100000, ContainerID: 0, Length: 65536}},
			GIDs: []idMapping{{HostID: 200000, ContainerID: 0, Length: 65536}}},
		Overhead:  linuxResources{CPUShares: 2, MemoryLimitInBytes: 1 << 20},
		Resources: linuxResources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimitInBytes: 64 << 20},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}

	// A node-wide user namespace is no user namespace of the pod's.
	in.Linux.SecurityContext.NamespaceOptions.UsernsOptions.Mode = runtime.NamespaceMode_NODE
	in.Linux.SecurityContext.NamespaceOptions.Network = runtime.NamespaceMode_NODE
	data, _ = proto.Marshal(in)
	if got, err = decodePodSandboxConfig(data); err != nil || got.Userns != nil || got.NetworkMode != modeNode {
		t.Errorf("node user namespace: %+v, %v", got, err)
	}
	// An empty config decodes as defaults: every namespace the pod's.
	if got, err = decodePodSandboxConfig(nil); err != nil || got.NetworkMode != modePod || got.Userns != nil {
		t.Errorf("empty: %+v, %v", got, err)
	}
	if _, err := decodePodSandboxConfig([]byte{0x0a, 0x05, 0x01}); err == nil {
		t.Error("truncated config decoded")
	}
}

func TestIsCRIConfig(t *testing.T) {
	for url, want := range map[string]bool{
		"runtime.v1.PodSandboxConfig":                     true,
		"type.googleapis.com/runtime.v1.PodSandboxConfig": true,
		"runtime.v1.PodSandboxConfigX":                    false,
		"containerd.runc.v1.Options":                      false,
		"":                                                false,
	} {
		if got := isCRIConfig(url); got != want {
			t.Errorf("isCRIConfig(%q) = %v", url, got)
		}
	}
}
