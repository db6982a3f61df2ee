package pod

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// richSpec has every part of a spec that containerd's clients write, and
// more than the shim reads.
func richSpec() *specs.Spec {
	timeout, adj, limit := 5, -500, int64(100)
	return &specs.Spec{
		Version:  "1.2.0",
		Hostname: "web",
		Process: &specs.Process{
			Terminal: true,
			User:     specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{5, 6}},
			Args:     []string{"/bin/sh", "-c", "true"},
			Env:      []string{"PATH=/bin"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
			OOMScoreAdj:     &adj,
		},
		Root:   &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid"}}},
		Hooks: &specs.Hooks{
			CreateRuntime: []specs.Hook{{Path: "/bin/hook", Args: []string{"hook", "netns"}, Timeout: &timeout}},
		},
		Annotations: map[string]string{"io.kubernetes.cri.sandbox-id": "sb1"},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: &limit},
				Pids:    &specs.LinuxPids{Limit: &limit},
			},
			CgroupsPath: "/kubepods/pod1/c1",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}, {Type: specs.UserNamespace},
			},
			Devices:       []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
			Seccomp:       &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
}

// rewrite is what the shim does to a container's spec: a mount added and
// one replaced, namespaces joined, id mappings replaced.
func rewrite(s *specs.Spec) {
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: "/run/pod/hostname", Options: []string{"rbind", "ro"}})
	s.Mounts[1] = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/pod/shm", Options: []string{"rbind"}}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/77/ns/net"}, {Type: specs.UserNamespace, Path: "/run/pod/userns"}}
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	s.Linux.GIDMappings = nil
}

// TestSpecDocAsAWholeSpec is the oracle: what the shim reads from a
// SpecDoc is what a whole specs.Spec holds, and the document a SpecDoc
// writes back after the shim's rewrite decodes to the same spec as the
// whole specs.Spec rewritten and encoded.
func TestSpecDocAsAWholeSpec(t *testing.T) {
	for name, in := range map[string]*specs.Spec{
		"rich":     richSpec(),
		"no linux": {Version: "1.2.0", Process: &specs.Process{Args: []string{"true"}}, Mounts: []specs.Mount{{Destination: "/proc"}, {Destination: "/dev/shm"}}},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var whole specs.Spec
			if err := json.Unmarshal(data, &whole); err != nil {
				t.Fatal(err)
			}
			doc, err := ParseSpec(data)
			if err != nil {
				t.Fatal(err)
			}
			s := doc.Spec
			if s.Version != whole.Version || s.Hostname != whole.Hostname || !reflect.DeepEqual(s.Root, whole.Root) ||
				!reflect.DeepEqual(s.Mounts, whole.Mounts) || !reflect.DeepEqual(s.Hooks, whole.Hooks) ||
				!reflect.DeepEqual(s.Annotations, whole.Annotations) {
				t.Errorf("top-level members differ:\n got %+v\nwant %+v", s, whole)
			}
			if p, w := s.Process, whole.Process; p.Terminal != w.Terminal || !reflect.DeepEqual(p.Args, w.Args) || p.User.UID != w.User.UID || p.User.GID != w.User.GID {
				t.Errorf("process: got %+v, want %+v", p, w)
			}
			if (s.Linux == nil) != (whole.Linux == nil) {
				t.Fatalf("linux: got %v, want %v", s.Linux, whole.Linux)
			}
			if l, w := s.Linux, whole.Linux; l != nil && (!reflect.DeepEqual(l.Namespaces, w.Namespaces) || !reflect.DeepEqual(l.UIDMappings, w.UIDMappings) ||
				!reflect.DeepEqual(l.GIDMappings, w.GIDMappings) || !reflect.DeepEqual(l.Sysctl, w.Sysctl) || l.CgroupsPath != w.CgroupsPath) {
				t.Errorf("linux: got %+v, want %+v", l, w)
			}

			rewrite(s)
			rewrite(&whole)
			out, err := doc.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(&whole)
			var got, wantSpec specs.Spec
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("written document: %v\n%s", err, out)
			}
			_ = json.Unmarshal(want, &wantSpec)
			if !reflect.DeepEqual(got, wantSpec) {
				t.Errorf("written spec differs:\n got %s\nwant %s", out, want)
			}
		})
	}
}

// TestSpecDocKeepsWhatItDoesNotKnow: members no specs.Spec field holds (a
// newer runtime-spec's) are written back as they were, which a whole
// specs.Spec round trip would drop.
func TestSpecDocKeepsWhatItDoesNotKnow(t *testing.T) {
	in := `{"mounts":[{"destination":"/proc"},{"destination":"/dev/shm"}],"process":{"args":["true"],"futureProcess":1},"future":{"a":[1,2]},"linux":{"namespaces":[],"futureLinux":"x"}}`
	doc, err := ParseSpec([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	rewrite(doc.Spec)
	out, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []string{`"future":{"a":[1,2]}`, `"futureProcess":1`, `"futureLinux":"x"`} {
		if !strings.Contains(string(out), keep) {
			t.Errorf("%s lost: %s", keep, out)
		}
	}
}

// TestSpecDocRefuses what the shim cannot read right: malformed JSON,
// members of the wrong type, and a member named in another case (which
// encoding/json, and so runc, would read as the member the shim reads).
func TestSpecDocRefuses(t *testing.T) {
	for _, in := range []string{
		`{"process":`,
		`[]`,
		`{"mounts":{}}`,
		`{"process":{"user":{"uid":-1}}}`,
		`{"linux":{"namespaces":"net"}}`,
		`{"Mounts":[]}`,
		`{"linux":{"UIDMappings":[]}}`,
	} {
		if _, err := ParseSpec([]byte(in)); err == nil {
			t.Errorf("ParseSpec(%s) accepted", in)
		}
	}
	doc, err := ParseSpec([]byte(`{"process":null,"linux":null}`))
	if err != nil || doc.Spec.Process != nil || doc.Spec.Linux != nil {
		t.Fatalf("null members: %+v, %v", doc, err)
	}
}
