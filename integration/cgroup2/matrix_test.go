//go:build cgroup2vm

package cgroup2

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// scenarios run, in order, under each containerd flavour and cgroup driver.
var scenarios = []struct {
	name string
	run  func(t *testing.T, e *env, r *report)
}{
	{"stats", testStats},
	{"update", testUpdate},
	{"oom", testOOM},
	{"pause-resume", testPauseResume},
	{"kill-all", testKillAll},
	{"exit-kills-rest", testExitKillsRest},
	{"shim-cgroup", testShimCgroup},
	{"pod-parent", testPodParent},
}

// TestCgroup2 runs every scenario under containerd 1.6 and 2.4 (TEST_CONTAINERD narrows it), each with the
// cgroupfs and the systemd driver: one private containerd per flavour and driver.
func TestCgroup2(t *testing.T) {
	harness.CheckRoot(t)
	fsType, err := cgroupFSType()
	if err != nil {
		t.Fatal(err)
	}
	if fsType != "cgroup2fs" {
		t.Fatalf("%s is %s: these scenarios need a cgroup v2 only kernel (make test-cgroup2)", cgroupRoot, fsType)
	}
	for _, f := range harness.Flavours(t) {
		version := containerdVersion(t, f)
		for _, driver := range []string{driverCgroupfs, driverSystemd} {
			t.Run(f.Name+"/"+driver, func(t *testing.T) {
				c := harness.Start(t, f, harness.Options{})
				e := newEnv(t, c, driver, version, fsType)
				for _, s := range scenarios {
					t.Run(s.name, func(t *testing.T) { s.run(t, e, e.scenario(t, s.name)) })
				}
			})
		}
	}
}
