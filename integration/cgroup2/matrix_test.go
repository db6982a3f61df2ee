//go:build cgroup2vm

package cgroup2

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// scenarios run, in order, under each containerd flavour and cgroup driver; those of the sandbox API under
// containerd 2.x only (1.6 has none).
var scenarios = []struct {
	name       string
	run        func(t *testing.T, e *env, r *report)
	sandboxAPI bool
}{
	{name: "stats", run: testStats},
	{name: "update", run: testUpdate},
	{name: "oom", run: testOOM},
	{name: "pause-resume", run: testPauseResume},
	{name: "kill-all", run: testKillAll},
	{name: "exit-kills-rest", run: testExitKillsRest},
	{name: "shim-cgroup", run: testShimCgroup},
	{name: "pod-parent", run: testPodParent},
	{name: "sandbox", run: testSandbox, sandboxAPI: true},
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
					if s.sandboxAPI && f.Is16() {
						continue
					}
					t.Run(s.name, func(t *testing.T) { s.run(t, e, e.scenario(t, s.name)) })
				}
			})
		}
	}
}
