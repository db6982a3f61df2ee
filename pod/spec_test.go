package pod

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	maps100 = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	maps200 = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
)

// nsEntry is a namespace entry; path "" asks for a new one.
func nsEntry(typ specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
	return specs.LinuxNamespace{Type: typ, Path: path}
}

func mkSpec(uids, gids []specs.LinuxIDMapping, nss ...specs.LinuxNamespace) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: nss, UIDMappings: uids, GIDMappings: gids}}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want Request
		err  string // an ErrInvalidSpec containing this
	}{
		{name: "no linux", spec: &specs.Spec{}, want: Request{}},
		{name: "host namespaces", spec: mkSpec(nil, nil, nsEntry(specs.PIDNamespace, ""), nsEntry(specs.MountNamespace, "")), want: Request{}},
		{name: "new net", spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")), want: Request{NewNet: true}},
		{name: "net path", spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "/var/run/netns/cni-1")), want: Request{NetPath: "/var/run/netns/cni-1"}},
		{
			name: "new user and net",
			spec: mkSpec(maps100, maps200, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, ""), nsEntry(specs.PIDNamespace, "")),
			want: Request{NewUser: true, NewNet: true, UIDMappings: maps100, GIDMappings: maps200},
		},
		{
			name: "new user, host network",
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "")),
			want: Request{NewUser: true, UIDMappings: maps100, GIDMappings: maps100},
		},
		{
			name: "user and net paths",
			spec: mkSpec(maps100, maps100, nsEntry(specs.NetworkNamespace, "/n"), nsEntry(specs.UserNamespace, "/u")),
			want: Request{UserPath: "/u", NetPath: "/n", UIDMappings: maps100, GIDMappings: maps100},
		},
		{
			name: "user path, host network",
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "/u")),
			want: Request{UserPath: "/u", UIDMappings: maps100, GIDMappings: maps100},
		},
		{
			name: "new user, net path: derive",
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "/n")),
			want: Request{NetPath: "/n", DeriveUser: true, UIDMappings: maps100, GIDMappings: maps100},
		},
		{
			name: "user path, new net",
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "/u"), nsEntry(specs.NetworkNamespace, "")),
			err:  "spec joins user namespace /u but asks for a new network namespace",
		},
		{
			name: "user without mappings",
			spec: mkSpec(nil, nil, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			err:  "no linux.uidMappings or no linux.gidMappings (uid none, gid none)",
		},
		{
			name: "user path without mappings",
			spec: mkSpec(nil, nil, nsEntry(specs.UserNamespace, "/u")),
			err:  "no linux.uidMappings",
		},
		{
			name: "user without gid mappings",
			spec: mkSpec(maps100, nil, nsEntry(specs.UserNamespace, "")),
			err:  "(uid 0:100000:65536, gid none)",
		},
		{
			name: "empty mapping",
			spec: mkSpec([]specs.LinuxIDMapping{{ContainerID: 0, HostID: 1, Size: 0}}, maps100, nsEntry(specs.UserNamespace, "")),
			err:  "size 0 (0:1:0)",
		},
		{
			name: "net twice",
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""), nsEntry(specs.NetworkNamespace, "/n")),
			err:  "lists the network namespace twice",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(tc.spec)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Decide = %+v, %v; want an ErrInvalidSpec containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
			if got.Creates() != (tc.want.NewUser || tc.want.NewNet) {
				t.Errorf("Creates = %v", got.Creates())
			}
		})
	}
}

func TestDecideDoesNotAliasSpec(t *testing.T) {
	spec := mkSpec(slicesClone(maps100), slicesClone(maps100), nsEntry(specs.UserNamespace, ""))
	req, err := Decide(spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Linux.UIDMappings[0].HostID = 1
	if req.UIDMappings[0].HostID != 100000 {
		t.Error("the request shares the spec's mapping array")
	}
}

func slicesClone(m []specs.LinuxIDMapping) []specs.LinuxIDMapping {
	return append([]specs.LinuxIDMapping(nil), m...)
}

var (
	userNetPod = &Namespaces{UserPath: "/pod/user", NetPath: "/pod/net", UIDMappings: maps100, GIDMappings: maps100, Owned: true}
	netPod     = &Namespaces{NetPath: "/pod/net", Owned: true}
	hostPod    = &Namespaces{}
)

func TestRewrite(t *testing.T) {
	multi := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 1000, HostID: 101000, Size: 64536}}
	multiSwapped := []specs.LinuxIDMapping{multi[1], multi[0]}
	multiPod := &Namespaces{UserPath: "/pod/user", NetPath: "/pod/net", UIDMappings: multi, GIDMappings: multi}
	for _, tc := range []struct {
		name string
		pod  *Namespaces
		spec *specs.Spec
		want *specs.Linux // nil: only check there is no error
		err  string       // an ErrConflict with exactly this text
	}{
		{
			name: "new user and net join the pod's",
			pod:  userNetPod,
			spec: mkSpec(maps100, maps100, nsEntry(specs.PIDNamespace, ""), nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, ""), nsEntry(specs.IPCNamespace, "/run/podtest/other/ipc")),
			want: &specs.Linux{
				Namespaces:  []specs.LinuxNamespace{nsEntry(specs.PIDNamespace, ""), nsEntry(specs.UserNamespace, "/pod/user"), nsEntry(specs.NetworkNamespace, "/pod/net"), nsEntry(specs.IPCNamespace, "/run/podtest/other/ipc")},
				UIDMappings: maps100, GIDMappings: maps100,
			},
		},
		{
			name: "missing mappings are the pod's",
			pod:  userNetPod,
			spec: mkSpec(nil, nil, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			want: &specs.Linux{
				Namespaces:  []specs.LinuxNamespace{nsEntry(specs.UserNamespace, "/pod/user"), nsEntry(specs.NetworkNamespace, "/pod/net")},
				UIDMappings: maps100, GIDMappings: maps100,
			},
		},
		{
			name: "mappings in another order are the same",
			pod:  multiPod,
			spec: mkSpec(multiSwapped, multi, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
		},
		{
			name: "net only",
			pod:  netPod,
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, ""), nsEntry(specs.UTSNamespace, "")),
			want: &specs.Linux{Namespaces: []specs.LinuxNamespace{nsEntry(specs.NetworkNamespace, "/pod/net"), nsEntry(specs.UTSNamespace, "")}},
		},
		{
			name: "host pod, host container",
			pod:  hostPod,
			spec: mkSpec(nil, nil, nsEntry(specs.PIDNamespace, "")),
			want: &specs.Linux{Namespaces: []specs.LinuxNamespace{nsEntry(specs.PIDNamespace, "")}},
		},
		{
			name: "nil pod is a host pod",
			pod:  nil,
			spec: mkSpec(nil, nil),
			want: &specs.Linux{},
		},
		{
			name: "other uid mappings",
			pod:  userNetPod,
			spec: mkSpec(maps200, maps100, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			err:  `container maps uid 0:200000:65536 but pod "pa" maps 0:100000:65536`,
		},
		{
			name: "other gid mappings",
			pod:  userNetPod,
			spec: mkSpec(maps100, maps200, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			err:  `container maps gid 0:200000:65536 but pod "pa" maps 0:100000:65536`,
		},
		{
			name: "fewer mappings",
			pod:  multiPod,
			spec: mkSpec(multi[:1], multi, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			err:  `container maps uid 0:100000:1000 but pod "pa" maps 0:100000:1000,1000:101000:64536`,
		},
		{
			name: "host network in a private network pod",
			pod:  userNetPod,
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "")),
			err:  `container asks for the host network but pod "pa" has a private network namespace (/pod/net)`,
		},
		{
			name: "host network in a net pod",
			pod:  netPod,
			spec: mkSpec(nil, nil),
			err:  `container asks for the host network but pod "pa" has a private network namespace (/pod/net)`,
		},
		{
			name: "other network namespace",
			pod:  netPod,
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "/var/run/netns/other")),
			err:  `container joins network namespace /var/run/netns/other but pod "pa" has network namespace /pod/net`,
		},
		{
			name: "private network in a host network pod",
			pod:  hostPod,
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")),
			err:  `container asks for a new network namespace but pod "pa" uses the host network`,
		},
		{
			name: "network path in a host network pod",
			pod:  hostPod,
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "/var/run/netns/x")),
			err:  `container asks for network namespace /var/run/netns/x but pod "pa" uses the host network`,
		},
		{
			name: "user namespace in a pod without one",
			pod:  netPod,
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, ""), nsEntry(specs.NetworkNamespace, "")),
			err:  `container asks for a new user namespace but pod "pa" has no user namespace (it runs in the host's)`,
		},
		{
			name: "user path in a pod without one",
			pod:  hostPod,
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "/run/podtest/other/user")),
			err:  `container asks for user namespace /run/podtest/other/user but pod "pa" has no user namespace (it runs in the host's)`,
		},
		{
			name: "host user namespace in a pod with one",
			pod:  userNetPod,
			spec: mkSpec(nil, nil, nsEntry(specs.NetworkNamespace, "")),
			err:  `container asks for the host user namespace but pod "pa" has user namespace /pod/user`,
		},
		{
			name: "other user namespace",
			pod:  userNetPod,
			spec: mkSpec(maps100, maps100, nsEntry(specs.UserNamespace, "/run/podtest/other/user"), nsEntry(specs.NetworkNamespace, "")),
			err:  `container joins user namespace /run/podtest/other/user but pod "pa" has user namespace /pod/user`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneSpec(tc.spec)
			err := Rewrite("pa", tc.pod, tc.spec)
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrConflict) || err.Error() != tc.err {
					t.Fatalf("Rewrite = %v;\nwant an ErrConflict %q", err, tc.err)
				}
				if !reflect.DeepEqual(before, tc.spec) {
					t.Errorf("a refused spec was changed:\n%+v\nwas\n%+v", tc.spec.Linux, before.Linux)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(tc.spec.Linux, tc.want) {
				t.Errorf("Rewrite gave\n%+v\nwant\n%+v", tc.spec.Linux, tc.want)
			}
		})
	}
}

func TestRewriteDoesNotAliasPod(t *testing.T) {
	pod := &Namespaces{UserPath: "/pod/user", UIDMappings: slicesClone(maps100), GIDMappings: slicesClone(maps100)}
	spec := mkSpec(nil, nil, nsEntry(specs.UserNamespace, ""))
	if err := Rewrite("pa", pod, spec); err != nil {
		t.Fatal(err)
	}
	spec.Linux.UIDMappings[0].HostID = 1
	if pod.UIDMappings[0].HostID != 100000 {
		t.Error("the spec shares the pod's mapping array")
	}
}

func TestRewriteNoLinux(t *testing.T) {
	spec := &specs.Spec{}
	if err := Rewrite("pa", netPod, spec); err == nil || !errors.Is(err, ErrConflict) || spec.Linux != nil {
		t.Errorf("a spec without linux in a net pod: %v (linux %v), want a conflict (host network) and no change", err, spec.Linux)
	}
	spec = &specs.Spec{}
	if err := Rewrite("pa", hostPod, spec); err != nil || spec.Linux == nil {
		t.Errorf("a spec without linux in a host pod: %v, linux %v", err, spec.Linux)
	}
}

func cloneSpec(s *specs.Spec) *specs.Spec {
	c := *s
	if s.Linux != nil {
		l := *s.Linux
		l.Namespaces = append([]specs.LinuxNamespace(nil), s.Linux.Namespaces...)
		l.UIDMappings = slicesClone(s.Linux.UIDMappings)
		l.GIDMappings = slicesClone(s.Linux.GIDMappings)
		c.Linux = &l
	}
	return &c
}
