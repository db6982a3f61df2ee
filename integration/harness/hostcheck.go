package harness

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// UnmountedHierarchies lists the cgroup v1 hierarchies that /proc/self/cgroup names and no cgroup mount shows. A
// named hierarchy unmounted while one of its cgroups was still being released lingers that way, in every process's
// /proc/PID/cgroup; containerd's cgroup library (in the reference shim) then fails to load any container's cgroup, and
// what the suite measures of it is wrong.
func UnmountedHierarchies() []string {
	procCgroup, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return []string{fmt.Sprintf("(read /proc/self/cgroup: %v)", err)}
	}
	return unmountedHierarchies(string(procCgroup), Mounts())
}

// unmountedHierarchies compares the lines of a /proc/PID/cgroup with the mounts of type cgroup.
func unmountedHierarchies(procCgroup string, mounts []Mount) []string {
	var left []string
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[0] == "0" || f[1] == "" {
			continue // cgroup v2's line
		}
		mounted := slices.ContainsFunc(mounts, func(m Mount) bool {
			if m.FSType != "cgroup" {
				return false
			}
			opts := strings.Split(m.Options, ",")
			for _, ctrl := range strings.Split(f[1], ",") {
				if !slices.Contains(opts, ctrl) {
					return false
				}
			}
			return true
		})
		if !mounted {
			left = append(left, f[1])
		}
	}
	return left
}

// checkHierarchies fails the suite, before or after its tests, on a host with cgroup v1 hierarchies that no mount
// shows (see UnmountedHierarchies).
func checkHierarchies(when string) bool {
	left := UnmountedHierarchies()
	if len(left) == 0 {
		return true
	}
	fmt.Fprintf(os.Stderr, "harness: %s, /proc/self/cgroup names cgroup v1 hierarchies that are not mounted: %s\n"+
		"(a named hierarchy unmounted while a cgroup of it was being released; containerd's cgroup library fails on such\n"+
		"a host. Remove each by mounting it again and unmounting it: mount -t cgroup -o none,name=NAME cgroup DIR; umount DIR)\n",
		when, strings.Join(left, " "))
	return false
}
