package sandbox

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
)

// specTypeURL is how containerd names an OCI spec in an Any.
const specTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

// podSpec is the part of an OCI spec (specs.Spec) that a sandbox's spec
// holds, with the same JSON names: its JSON is what specs.Spec with only
// these fields set marshals to. encoding/json builds the coders of a type,
// and of every type reachable from it, on its first use: for specs.Spec
// that took 0.4-0.7 ms of StartSandbox in a new shim; for this, a few
// types.
type podSpec struct {
	Version     string            `json:"ociVersion"`
	Hostname    string            `json:"hostname,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *podSpecLinux     `json:"linux,omitempty"`
}

type podSpecLinux struct {
	UIDMappings []specs.LinuxIDMapping `json:"uidMappings,omitempty"`
	GIDMappings []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
	Sysctl      map[string]string      `json:"sysctl,omitempty"`
	CgroupsPath string                 `json:"cgroupsPath,omitempty"`
	Namespaces  []specs.LinuxNamespace `json:"namespaces,omitempty"`
}

// spec is the OCI spec of the sandbox that StartSandbox returns for NRI: its
// namespaces, cgroup and sysctls.
func (sb *sandbox) spec() (*anypb.Any, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.specLocked()
}

func (sb *sandbox) specLocked() (*anypb.Any, error) {
	pid := 0
	if sb.proc != nil {
		pid = sb.proc.pid
	}
	leaf := ""
	if sb.leaf != nil {
		if parent, err := cgroup.CgroupfsPath(sb.plan.CgroupParent); err == nil {
			leaf = filepath.Join(parent, sb.id)
		}
	}
	p := sb.plan
	spec := &podSpec{
		Version:     specs.Version,
		Hostname:    p.Hostname,
		Annotations: p.Annotations,
		Linux:       &podSpecLinux{CgroupsPath: leaf},
	}
	ns, _ := sb.pod.Namespaces()
	add := func(typ specs.LinuxNamespaceType, kind string, has bool) {
		if has {
			spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: nsPath(pid, kind)})
		}
	}
	add(specs.UserNamespace, "user", ns.HasUser())
	add(specs.NetworkNamespace, "net", ns.HasNet())
	add(specs.IPCNamespace, "ipc", p.NewIPC)
	add(specs.UTSNamespace, "uts", p.NewUTS)
	add(specs.PIDNamespace, "pid", p.NewPID)
	if ns.HasUser() {
		spec.Linux.UIDMappings, spec.Linux.GIDMappings = ns.UIDMappings, ns.GIDMappings
	}
	if len(p.Sysctls) > 0 {
		spec.Linux.Sysctl = make(map[string]string, len(p.Sysctls))
		for _, s := range p.Sysctls {
			spec.Linux.Sysctl[s.Key] = s.Value
		}
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("marshal the spec of sandbox %s: %w", sb.id, err)
	}
	return &anypb.Any{TypeUrl: specTypeURL, Value: data}, nil
}

// prepareForContainers builds, once and from a goroutine, what the pod's
// first container's create would otherwise build on its critical path:
// encoding/json's coders of the parts of the OCI spec a create reads and
// writes back (pod.SpecDoc). Called once the sandbox has started: the shim
// is idle until containerd creates that container, a few ms later.
func prepareForContainers() {
	go prepareOnce()
}

// everyPartOfASpecDoc has a member of each type pod.SpecDoc decodes.
const everyPartOfASpecDoc = `{"ociVersion":"","hostname":"","root":{},"mounts":[{"uidMappings":[{}]}],` +
	`"hooks":{"prestart":[{}]},"annotations":{"a":""},"process":{"args":[""],"user":{}},` +
	`"linux":{"namespaces":[{}],"uidMappings":[{}],"sysctl":{"a":""},"cgroupsPath":""}}`

var prepareOnce = sync.OnceFunc(func() {
	if doc, err := pod.ParseSpec([]byte(everyPartOfASpecDoc)); err == nil {
		_, _ = doc.Marshal()
	}
})
