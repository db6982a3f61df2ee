//go:build linux

package pod

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A key that validates is a single safe path element: the state dir made of
// it stays two levels under its root.
func FuzzGroupKey(f *testing.F) {
	f.Add("", "", "", "c1", "default")
	f.Add("3f5a9c", "", "", "c1", "k8s.io")
	f.Add("", "web", "grp", "c1", "default")
	f.Add("", "", "../../etc", "c1", "default")
	f.Add("", "a/b", "", "c1", "..")
	f.Add("", "", "", "x\x00y", "default")
	f.Fuzz(func(t *testing.T, sandbox, podName, group, taskID, namespace string) {
		ann := map[string]string{AnnotationCRISandboxID: sandbox, AnnotationPod: podName, AnnotationRuncGroup: group}
		key := GroupKey(ann, taskID)
		want := taskID
		for _, v := range []string{group, podName, sandbox} {
			if v != "" {
				want = v
			}
		}
		if key != want {
			t.Fatalf("GroupKey(%q) = %q, want %q (the first annotation set, else the task id)", ann, key, want)
		}
		for _, id := range []string{key, namespace} {
			if ValidateID(id) != nil {
				continue
			}
			if strings.ContainsAny(id, "/\\\x00") || strings.Contains(id, "..") || id == "." || len(id) > maxIDLength {
				t.Fatalf("ValidateID accepted %q", id)
			}
		}
		const root = "/run/pod-root"
		dir, err := StateDir(root, namespace, key)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("StateDir(%q, %q): %v, want an ErrInvalidID", namespace, key, err)
			}
			return
		}
		if dir != filepath.Clean(dir) || filepath.Dir(filepath.Dir(dir)) != root ||
			filepath.Base(dir) != key || filepath.Base(filepath.Dir(dir)) != namespace {
			t.Fatalf("StateDir(%q, %q) = %q: not %s/NAMESPACE/KEY", namespace, key, dir, root)
		}
	})
}

// The pod namespaces a fuzz case's pod has, by its mode: none, a network
// namespace, a user namespace, both.
func fuzzPodNamespaces(mode uint8) *Namespaces {
	ns := &Namespaces{}
	if mode&1 != 0 {
		ns.NetPath = "/run/pod-fuzz/net"
	}
	if mode&2 != 0 {
		ns.UserPath = "/run/pod-fuzz/user"
		ns.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		ns.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	}
	return ns
}

// namespacesOf is what a pod decided from its first container would have.
func namespacesOf(req Request) *Namespaces {
	ns := &Namespaces{UserPath: req.UserPath, NetPath: req.NetPath, UIDMappings: req.UIDMappings, GIDMappings: req.GIDMappings}
	if req.NewUser || req.DeriveUser {
		ns.UserPath = "/run/pod-fuzz/pinned-user"
	}
	if req.NewNet {
		ns.NetPath = "/run/pod-fuzz/pinned-net"
	}
	return ns
}

// Decide and Rewrite on any spec: no panic; Decide changes nothing; a spec
// Rewrite refuses is left as it was, with an ErrConflict or ErrInvalidSpec;
// a spec it accepts joins exactly the pod's namespaces, with the pod's
// mappings, and nothing else changes but the entries naming the host's
// namespaces, which go. The first container's spec is always rewritable to
// the namespaces decided from it (when the paths it adopts exist: adopting
// a path that does not fails before any rewrite).
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"linux":{}}`,
		`{"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"mount"}]}}`,
		`{"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/cni-1"}]}}`,
		`{"linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"},{"type":"ipc","path":"/proc/self/ns/ipc"}]}}`,
		`{"linux":{"namespaces":[{"type":"user","path":"/proc/thread-self/ns/user"}],"uidMappings":[{"containerID":0,"hostID":1,"size":1}]}}`,
		`{"linux":{"namespaces":[{"type":"user"},{"type":"network"}],"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":200000,"size":65536}]}}`,
		`{"linux":{"namespaces":[{"type":"user","path":"/proc/1/ns/user"},{"type":"network"}],"uidMappings":[{"containerID":0,"hostID":1,"size":1}],"gidMappings":[{"containerID":0,"hostID":1,"size":1}]}}`,
		`{"linux":{"namespaces":[{"type":"network"},{"type":"network"}]}}`,
		`{"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":1,"size":0}],"gidMappings":[]}}`,
	} {
		for mode := range uint8(4) {
			f.Add([]byte(s), mode)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		var spec, pristine specs.Spec
		if json.Unmarshal(data, &spec) != nil || json.Unmarshal(data, &pristine) != nil {
			return
		}
		req, err := Decide(&spec)
		if err != nil && !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("Decide: %v, want an ErrInvalidSpec", err)
		}
		if !reflect.DeepEqual(&spec, &pristine) {
			t.Fatalf("Decide changed the spec")
		}
		if err == nil && exists(req.UserPath) && exists(req.NetPath) {
			first := spec // the pod's first container
			first.Linux = cloneLinux(spec.Linux)
			checkRewrite(t, namespacesOf(req), &first, &pristine, false)
		}
		checkRewrite(t, fuzzPodNamespaces(mode), &spec, &pristine, true)
	})
}

// exists tells whether path is "" or names something.
func exists(path string) bool {
	if path == "" {
		return true
	}
	_, err := os.Stat(path)
	return err == nil
}

func cloneLinux(l *specs.Linux) *specs.Linux {
	if l == nil {
		return nil
	}
	c := *l
	c.Namespaces = append([]specs.LinuxNamespace(nil), l.Namespaces...)
	c.UIDMappings = append([]specs.LinuxIDMapping(nil), l.UIDMappings...)
	c.GIDMappings = append([]specs.LinuxIDMapping(nil), l.GIDMappings...)
	return &c
}

// checkRewrite rewrites spec (equal to pristine) for ns and checks the
// result; mayRefuse is false for the pod's first container.
func checkRewrite(t *testing.T, ns *Namespaces, spec, pristine *specs.Spec, mayRefuse bool) {
	t.Helper()
	err := Rewrite("pod", ns, spec)
	if err != nil {
		if !mayRefuse {
			t.Fatalf("the first container's spec cannot join the namespaces decided from it (%+v): %v", ns, err)
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrInvalidSpec) {
			t.Fatalf("Rewrite refused with %v, want an ErrConflict or ErrInvalidSpec", err)
		}
		if !reflect.DeepEqual(spec, pristine) {
			t.Fatalf("Rewrite refused (%v) and changed the spec", err)
		}
		return
	}
	if spec.Linux == nil {
		t.Fatal("Rewrite accepted the spec and left it without linux")
	}
	var users, nets []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		switch n.Type {
		case specs.UserNamespace:
			users = append(users, n)
		case specs.NetworkNamespace:
			nets = append(nets, n)
		}
	}
	if ns.HasUser() != (len(users) == 1) || len(users) > 1 || (len(users) == 1 && users[0].Path != ns.UserPath) {
		t.Fatalf("pod user namespace %q; the rewritten spec has %+v", ns.UserPath, users)
	}
	if ns.HasNet() != (len(nets) == 1) || len(nets) > 1 || (len(nets) == 1 && nets[0].Path != ns.NetPath) {
		t.Fatalf("pod network namespace %q; the rewritten spec has %+v", ns.NetPath, nets)
	}
	// Nothing else changed: the pristine spec without its entries of the
	// host's namespaces, with the pod's namespaces and mappings put in, is
	// the rewritten one.
	want := *pristine
	want.Linux = cloneLinux(pristine.Linux)
	if want.Linux == nil {
		want.Linux = &specs.Linux{}
	}
	list, hostUser := withoutHostNamespaces(want.Linux.Namespaces)
	want.Linux.Namespaces = list
	if hostUser {
		want.Linux.UIDMappings, want.Linux.GIDMappings = nil, nil
	}
	for i, n := range want.Linux.Namespaces {
		switch n.Type {
		case specs.UserNamespace:
			want.Linux.Namespaces[i].Path = ns.UserPath
		case specs.NetworkNamespace:
			want.Linux.Namespaces[i].Path = ns.NetPath
		}
	}
	if ns.HasUser() {
		want.Linux.UIDMappings, want.Linux.GIDMappings = ns.UIDMappings, ns.GIDMappings
	}
	if !reflect.DeepEqual(normalized(spec), normalized(&want)) {
		t.Fatalf("Rewrite changed more than the pod's namespaces:\n got  %+v\n want %+v", spec.Linux, want.Linux)
	}
}

// normalized is spec as JSON: nil and empty lists are alike.
func normalized(spec *specs.Spec) string {
	data, err := json.Marshal(spec)
	if err != nil {
		return err.Error()
	}
	return string(data)
}
