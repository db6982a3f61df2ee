package mounts

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseRROPolicy(t *testing.T) {
	for in, want := range map[string]RROPolicy{"": RROIfPossible, "Enabled": RROEnabled, "IfPossible": RROIfPossible, "Disabled": RRODisabled} {
		got, err := ParseRROPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseRROPolicy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"enabled", "yes", "true", " Enabled"} {
		if _, err := ParseRROPolicy(in); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("ParseRROPolicy(%q): %v, want ErrInvalidPolicy", in, err)
		}
	}
}

func rroSpec() *specs.Spec {
	return &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro"}},
		{Destination: "/ro", Type: "bind", Source: "/a", Options: []string{"rbind", "ro"}},
		{Destination: "/ro-opt", Source: "/b", Options: []string{"bind", "ro", "rprivate"}},
		{Destination: "/rw", Type: "bind", Source: "/c", Options: []string{"rbind", "rw"}},
		{Destination: "/ro-then-rw", Type: "bind", Source: "/d", Options: []string{"ro", "rbind", "rw"}},
		{Destination: "/already", Type: "bind", Source: "/e", Options: []string{"rbind", "rro"}},
		{Destination: "/slave", Type: "bind", Source: "/f", Options: []string{"rbind", "ro", "rslave"}},
	}}
}

func optionsOf(spec *specs.Spec) map[string]string {
	m := map[string]string{}
	for _, x := range spec.Mounts {
		m[x.Destination] = strings.Join(x.Options, ",")
	}
	return m
}

func TestApplyRRO(t *testing.T) {
	yes := RROSupport{OK: true}
	no := RROSupport{Reason: "the runtime does not list rro"}

	spec := rroSpec()
	up, plain, err := ApplyRRO(spec, RROIfPossible, yes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(up, []string{"/ro", "/ro-opt"}) || !slices.Equal(plain, []string{"/slave"}) {
		t.Errorf("IfPossible, supported: upgraded %v, plain %v; want [/ro /ro-opt], [/slave]", up, plain)
	}
	got := optionsOf(spec)
	want := optionsOf(rroSpec())
	want["/ro"] = "rbind,ro,rro"
	want["/ro-opt"] = "bind,ro,rprivate,rro"
	for d := range want {
		if got[d] != want[d] {
			t.Errorf("%s: options %q, want %q", d, got[d], want[d])
		}
	}

	spec = rroSpec()
	up, plain, err = ApplyRRO(spec, RROIfPossible, no)
	if err != nil || len(up) != 0 || !slices.Equal(plain, []string{"/ro", "/ro-opt", "/slave"}) {
		t.Errorf("IfPossible, unsupported: %v %v %v", up, plain, err)
	}
	if !equalMaps(optionsOf(spec), optionsOf(rroSpec())) {
		t.Errorf("IfPossible, unsupported, changed the spec: %v", optionsOf(spec))
	}

	for _, support := range []RROSupport{yes, no} {
		spec = rroSpec()
		if up, plain, err := ApplyRRO(spec, RRODisabled, support); err != nil || up != nil || plain != nil || !equalMaps(optionsOf(spec), optionsOf(rroSpec())) {
			t.Errorf("Disabled: %v %v %v, spec %v", up, plain, err, optionsOf(spec))
		}
	}

	spec = rroSpec()
	_, _, err = ApplyRRO(spec, RROEnabled, no)
	if !errors.Is(err, ErrRROUnsupported) || !strings.Contains(err.Error(), "/ro ") || !strings.Contains(err.Error(), no.Reason) {
		t.Errorf("Enabled, unsupported: %v; want ErrRROUnsupported naming /ro and the reason", err)
	}
	if !equalMaps(optionsOf(spec), optionsOf(rroSpec())) {
		t.Errorf("a refused spec was changed: %v", optionsOf(spec))
	}
	spec = rroSpec()
	_, _, err = ApplyRRO(spec, RROEnabled, yes)
	if !errors.Is(err, ErrRROUnsupported) || !strings.Contains(err.Error(), "/slave") || !strings.Contains(err.Error(), "propagation") {
		t.Errorf("Enabled with an rslave mount: %v; want ErrRROUnsupported naming /slave and its propagation", err)
	}
	spec = rroSpec()
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/slave" })
	if up, _, err := ApplyRRO(spec, RROEnabled, yes); err != nil || !slices.Equal(up, []string{"/ro", "/ro-opt"}) {
		t.Errorf("Enabled, supported: %v %v", up, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestIDMapOf(t *testing.T) {
	pod := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	other := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1000}}
	cases := []struct {
		name   string
		m      specs.Mount
		uids   []specs.LinuxIDMapping
		wants  bool
		err    string
		want   []specs.LinuxIDMapping
		isRecu bool
	}{
		{name: "plain bind", m: specs.Mount{Destination: "/d", Type: "bind", Options: []string{"rbind"}}},
		{name: "mappings", m: specs.Mount{Destination: "/d", Type: "bind", UIDMappings: other, GIDMappings: other}, uids: pod, wants: true, want: other},
		{name: "idmap option", m: specs.Mount{Destination: "/d", Type: "bind", Options: []string{"rbind", "idmap"}}, uids: pod, wants: true, want: pod},
		{name: "ridmap option", m: specs.Mount{Destination: "/d", Options: []string{"rbind", "ridmap"}}, uids: pod, wants: true, want: pod, isRecu: true},
		{name: "no userns", m: specs.Mount{Destination: "/d", Type: "bind", Options: []string{"idmap"}}, wants: true, err: "no user namespace mappings"},
		{name: "uid only", m: specs.Mount{Destination: "/d", Type: "bind", UIDMappings: pod}, uids: pod, wants: true, err: "not both"},
		{name: "not a bind", m: specs.Mount{Destination: "/d", Type: "tmpfs", UIDMappings: pod, GIDMappings: pod}, uids: pod, wants: true, err: "only bind mounts"},
		{name: "size 0", m: specs.Mount{Destination: "/d", Type: "bind", UIDMappings: []specs.LinuxIDMapping{{}}, GIDMappings: pod}, uids: pod, wants: true, err: "size 0"},
	}
	for _, tc := range cases {
		if got := WantsIDMap(tc.m); got != tc.wants {
			t.Errorf("%s: WantsIDMap %v, want %v", tc.name, got, tc.wants)
		}
		if !tc.wants {
			continue
		}
		r, err := IDMapOf(tc.m, tc.uids, tc.uids)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "/d") {
				t.Errorf("%s: %v, want an error naming /d with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(r.UIDMappings, tc.want) || !slices.Equal(r.GIDMappings, tc.want) || r.Recursive != tc.isRecu {
			t.Errorf("%s: %+v %v", tc.name, r, err)
		}
	}
}

func TestStagedIDMap(t *testing.T) {
	m := specs.Mount{Destination: "/d", Type: "bind", Source: "/host", Options: []string{"rbind", "ridmap", "ro"},
		UIDMappings: []specs.LinuxIDMapping{{Size: 1}}, GIDMappings: []specs.LinuxIDMapping{{Size: 1}}}
	s := StagedIDMap(m, "/stage/0")
	if s.Source != "/stage/0" || s.Destination != "/d" || s.Type != "bind" || s.UIDMappings != nil || s.GIDMappings != nil ||
		strings.Join(s.Options, ",") != "rbind,ro" {
		t.Errorf("staged %+v", s)
	}
	if strings.Join(m.Options, ",") != "rbind,ridmap,ro" {
		t.Errorf("the original was changed: %v", m.Options)
	}
	s = StagedIDMap(specs.Mount{Destination: "/f", Type: "bind", Source: "/h", Options: []string{"idmap"}}, "/stage/1")
	if strings.Join(s.Options, ",") != "bind" {
		t.Errorf("staged options %v, want [bind]", s.Options)
	}
}

func TestBindHostSysfs(t *testing.T) {
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
	}}
	if got := BindHostSysfs(spec, true); !slices.Equal(got, []string{"/sys"}) {
		t.Fatalf("replaced %v", got)
	}
	m := spec.Mounts[1]
	if m.Type != "bind" || m.Source != "/sys" || m.Destination != "/sys" || strings.Join(m.Options, ",") != "rbind,nosuid,nodev,noexec,ro,rro" {
		t.Errorf("/sys is %+v", m)
	}
	if spec.Mounts[0].Type != "proc" || spec.Mounts[2].Type != "cgroup" {
		t.Errorf("other mounts changed: %+v", spec.Mounts)
	}
	spec.Mounts[1] = specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs"}
	BindHostSysfs(spec, false)
	if strings.Join(spec.Mounts[1].Options, ",") != "rbind,nosuid,nodev,noexec,ro" {
		t.Errorf("without rro: %v", spec.Mounts[1].Options)
	}
}
