package pod

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSharedApply(t *testing.T) {
	shared := Shared{
		IPCPath: "/proc/42/ns/ipc",
		UTSPath: "/proc/42/ns/uts",
		Mounts: []specs.Mount{
			{Destination: "/etc/hostname", Type: "bind", Source: "/pod/files/hostname", Options: []string{"rbind", "rprivate"}},
			{Destination: "/dev/shm", Type: "bind", Source: "/pod/files/shm", Options: []string{"rbind", "rprivate"}},
		},
	}
	defaultShm := specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "mode=1777"}}
	userShm := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/host/shm", Options: []string{"rbind"}}
	userHostname := specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: "/mine", Options: []string{"rbind"}}

	for _, tc := range []struct {
		name     string
		spec     *specs.Spec
		wantNS   []specs.LinuxNamespace
		wantMnts []specs.Mount
	}{
		{
			name: "ctr: new ipc and uts join the pod's, pid stays, default shm replaced",
			spec: &specs.Spec{
				Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
					nsEntry(specs.PIDNamespace, ""), nsEntry(specs.IPCNamespace, ""), nsEntry(specs.UTSNamespace, ""), nsEntry(specs.MountNamespace, ""),
				}},
				Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, defaultShm},
			},
			wantNS: []specs.LinuxNamespace{
				nsEntry(specs.PIDNamespace, ""), nsEntry(specs.IPCNamespace, "/proc/42/ns/ipc"), nsEntry(specs.UTSNamespace, "/proc/42/ns/uts"), nsEntry(specs.MountNamespace, ""),
			},
			wantMnts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, shared.Mounts[1], shared.Mounts[0]},
		},
		{
			name: "CRI: named paths and the host's namespaces stay, the client's mounts stay",
			spec: &specs.Spec{
				Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
					nsEntry(specs.IPCNamespace, "/proc/7/ns/ipc"),
				}},
				Mounts: []specs.Mount{userShm, userHostname},
			},
			wantNS:   []specs.LinuxNamespace{nsEntry(specs.IPCNamespace, "/proc/7/ns/ipc")},
			wantMnts: []specs.Mount{userShm, userHostname},
		},
		{
			name: "read-only root: files read-only, /dev/shm not",
			spec: &specs.Spec{Root: &specs.Root{Path: "rootfs", Readonly: true}},
			wantMnts: []specs.Mount{
				{Destination: "/etc/hostname", Type: "bind", Source: "/pod/files/hostname", Options: []string{"rbind", "rprivate", "ro"}},
				shared.Mounts[1],
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared.apply(tc.spec)
			var gotNS []specs.LinuxNamespace
			if tc.spec.Linux != nil {
				gotNS = tc.spec.Linux.Namespaces
			}
			if !reflect.DeepEqual(gotNS, tc.wantNS) {
				t.Errorf("namespaces = %+v\nwant %+v", gotNS, tc.wantNS)
			}
			if !reflect.DeepEqual(tc.spec.Mounts, tc.wantMnts) {
				t.Errorf("mounts = %+v\nwant %+v", tc.spec.Mounts, tc.wantMnts)
			}
		})
	}
	// The pod's own mounts are never changed through a container's spec.
	if len(shared.Mounts[0].Options) != 2 {
		t.Errorf("the pod's mount options were changed: %v", shared.Mounts[0].Options)
	}
}
