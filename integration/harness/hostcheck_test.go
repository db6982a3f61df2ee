package harness

import (
	"slices"
	"testing"
)

// The hierarchies of this morning's host: a named one left by an unmount shows in /proc/self/cgroup with no mount.
func TestUnmountedHierarchies(t *testing.T) {
	const procCgroup = `11:name=podproc-test-20628:/
9:name=systemd:/
2:cpu,cpuacct:/
4:memory:/x
0::/`
	mounts := []Mount{
		{MountPoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Options: "rw,cpu,cpuacct"},
		{MountPoint: "/sys/fs/cgroup/memory", FSType: "cgroup", Options: "rw,memory"},
		{MountPoint: "/sys/fs/cgroup/systemd", FSType: "cgroup", Options: "rw,xattr,name=systemd"},
		{MountPoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Options: "rw"},
	}
	if got := unmountedHierarchies(procCgroup, mounts); !slices.Equal(got, []string{"name=podproc-test-20628"}) {
		t.Errorf("unmounted hierarchies = %q, want the named test hierarchy alone", got)
	}
	if got := unmountedHierarchies(procCgroup, mounts[1:]); !slices.Equal(got, []string{"name=podproc-test-20628", "cpu,cpuacct"}) {
		t.Errorf("without the cpu,cpuacct mount: %q", got)
	}
	if got := unmountedHierarchies("0::/\n", nil); len(got) != 0 {
		t.Errorf("a cgroup v2 host: %q, want none", got)
	}
	if got := UnmountedHierarchies(); len(got) != 0 {
		t.Errorf("this host: %q", got)
	}
}
