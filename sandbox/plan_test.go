package sandbox

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/pod/podproc"
)

var podMaps = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}

func TestPlanFromCRI(t *testing.T) {
	userns := &usernsOptions{Mode: modePod, UIDs: []idMapping{{HostID: 100000, Length: 65536}}, GIDs: []idMapping{{HostID: 100000, Length: 65536}}}
	for _, tc := range []struct {
		name  string
		cfg   podSandboxConfig
		netns string
		want  plan
	}{
		{
			name:  "a pod of its own network: CRI's netns, new ipc/uts/pid, CRI's default sysctls",
			cfg:   podSandboxConfig{Hostname: "web-0", CgroupParent: "/kubepods/p1", Sysctls: map[string]string{"kernel.shmmax": "1000"}},
			netns: "/run/netns/cni-1",
			want: plan{
				Namespaces: pod.Request{NetPath: "/run/netns/cni-1"},
				NewIPC:     true, NewUTS: true, NewPID: true,
				Hostname: "web-0", ShmSize: defaultShmSize, CgroupParent: "/kubepods/p1",
				Sysctls: []podproc.Sysctl{
					{Key: "kernel.shmmax", Value: "1000"},
					{Key: "net.ipv4.ip_unprivileged_port_start", Value: "0"},
					{Key: "net.ipv4.ping_group_range", Value: "0 2147483647"},
				},
			},
		},
		{
			name:  "user-namespaced: the user namespace owning CRI's netns, no ping range; the pod's own sysctl wins",
			cfg:   podSandboxConfig{Userns: userns, Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}},
			netns: "/run/netns/cni-2",
			want: plan{
				Namespaces: pod.Request{NetPath: "/run/netns/cni-2", DeriveUser: true, UIDMappings: podMaps, GIDMappings: podMaps},
				NewIPC:     true, NewUTS: true, NewPID: true, Hostname: "host-a", ShmSize: defaultShmSize,
				Sysctls: []podproc.Sysctl{{Key: "net.ipv4.ip_unprivileged_port_start", Value: "80"}},
			},
		},
		{
			name: "host network, IPC and PID: nothing new but the host's hostname, no /dev/shm, no default sysctls",
			cfg:  podSandboxConfig{Hostname: "ignored", NetworkMode: modeNode, IPCMode: modeNode, PIDMode: modeNode},
			want: plan{Hostname: "host-a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planFromCRI(&tc.cfg, tc.netns, "host-a")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("plan\n%+v\nwant\n%+v", *got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, netns, want string
		cfg               podSandboxConfig
	}{
		{"no netns", "", "named no network namespace", podSandboxConfig{}},
		{"userns and host network", "", "user namespace and the host network", podSandboxConfig{NetworkMode: modeNode, Userns: userns}},
		{"net sysctl with host network", "", "which the pod shares with the host", podSandboxConfig{NetworkMode: modeNode, Sysctls: map[string]string{"net.core.somaxconn": "1"}}},
		{"ipc sysctl with host ipc", "/n", "which the pod shares with the host", podSandboxConfig{IPCMode: modeNode, Sysctls: map[string]string{"kernel.msgmax": "1"}}},
		{"not namespaced", "/n", "not of a namespace the pod has", podSandboxConfig{Sysctls: map[string]string{"vm.swappiness": "1"}}},
		{"empty mapping", "/n", "length 0", podSandboxConfig{Userns: &usernsOptions{UIDs: []idMapping{{}}, GIDs: []idMapping{{Length: 1}}}}},
		{"no gid mapping", "/n", "without gid mappings", podSandboxConfig{Userns: &usernsOptions{UIDs: []idMapping{{Length: 1}}}}},
		{"resolv.conf injection", "/n", "holds a newline", podSandboxConfig{DNS: dnsConfig{Servers: []string{"10.0.0.1\nnameserver 6.6.6.6"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planFromCRI(&tc.cfg, tc.netns, "h")
			if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want errInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestPlanFromSpec(t *testing.T) {
	spec := &specs.Spec{
		Hostname:    "sb-1",
		Annotations: map[string]string{"k": "v"},
		Linux: &specs.Linux{
			UIDMappings: podMaps, GIDMappings: podMaps,
			Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.PIDNamespace}, {Type: specs.MountNamespace}},
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
			CgroupsPath: "/sb",
		},
	}
	got, err := planFromSpec(spec, "host-a")
	if err != nil {
		t.Fatal(err)
	}
	want := plan{
		Namespaces: pod.Request{NewUser: true, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps},
		NewIPC:     true, NewUTS: true, NewPID: true, Hostname: "sb-1", ShmSize: defaultShmSize, CgroupParent: "/sb",
		Sysctls: []podproc.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}}, Annotations: map[string]string{"k": "v"},
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("plan\n%+v\nwant\n%+v", *got, want)
	}
	// The host's everything: no namespace of the pod's own, the host's name.
	got, err = planFromSpec(&specs.Spec{Hostname: "ignored"}, "host-a")
	if err != nil || !reflect.DeepEqual(*got, plan{Hostname: "host-a"}) {
		t.Errorf("empty spec: %+v, %v", got, err)
	}
	spec.Linux.Namespaces = append(spec.Linux.Namespaces[:2], specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"})
	if _, err := planFromSpec(spec, "h"); !errors.Is(err, errInvalid) {
		t.Errorf("a pid namespace path: %v", err)
	}
}

func TestResolvConf(t *testing.T) {
	got := string(resolvConf(&dnsConfig{Servers: []string{"10.0.0.10", "8.8.8.8"}, Searches: []string{"a.svc", "svc"}, Options: []string{"ndots:5", "edns0"}}))
	want := "search a.svc svc\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5 edns0\n"
	if got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
}

func TestResourcesPlusOverhead(t *testing.T) {
	got := linuxResources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimitInBytes: 64 << 20}.
		plus(linuxResources{CPUQuota: 10000, CPUShares: 2, MemoryLimitInBytes: 1 << 20})
	want := cgroup.Resources{MemoryLimit: 65 << 20, CPUShares: 514, CPUQuota: 60000, CPUPeriod: 100000}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := (linuxResources{}).plus(linuxResources{MemoryLimitInBytes: 1}); got != (cgroup.Resources{}) {
		t.Errorf("overhead alone set %+v: a pod without limits stays without", got)
	}
}
