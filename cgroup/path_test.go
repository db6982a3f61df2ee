package cgroup

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
)

func TestCgroupfsPath(t *testing.T) {
	for in, want := range map[string]string{
		"/kubepods/burstable/pod1":      "/kubepods/burstable/pod1",
		"kubepods/pod1/":                "/kubepods/pod1",
		"/a/../../b":                    "/b",
		"kubepods-burstable-pod1.slice": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
		"kubepods.slice":                "/kubepods.slice",
		"-.slice":                       "/",
		"/x/y.slice":                    "/x/y.slice",
	} {
		got, err := CgroupfsPath(in)
		if err != nil || got != want {
			t.Errorf("CgroupfsPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a--b.slice", "-a.slice", "a\x00b"} {
		if got, err := CgroupfsPath(bad); err == nil {
			t.Errorf("CgroupfsPath(%q) = %q, want an error", bad, got)
		}
	}
}

func TestLoadPathFromText(t *testing.T) {
	c, err := loadPath("kubepods-pod1.slice", parseMountinfo(t, hybridMountinfo), false)
	if err != nil {
		t.Fatal(err)
	}
	want := "/kubepods.slice/kubepods-pod1.slice"
	if c.dirs["memory"] != "/sys/fs/cgroup/memory"+want || c.dirs["cpu"] != "/sys/fs/cgroup/cpu,cpuacct"+want || c.dirs["cpuacct"] != c.dirs["cpu"] {
		t.Errorf("v1 dirs = %v", c.dirs)
	}
	// cpu and cpuacct share a directory: it is made once.
	if dirs := c.Directories(); len(dirs) != 4 {
		t.Errorf("directories = %v, want memory, cpu,cpuacct, pids, blkio", dirs)
	}
	child, err := c.Child("sb1")
	if err != nil || child.dirs["pids"] != "/sys/fs/cgroup/pids"+want+"/sb1" {
		t.Errorf("child = %+v, %v", child, err)
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := c.Child(bad); err == nil {
			t.Errorf("Child(%q) accepted", bad)
		}
	}
	u, err := loadPath("/pods/p1", parseMountinfo(t, unifiedMountinfo), true)
	if err != nil || u.unified != "/sys/fs/cgroup/pods/p1" || u.Version() != 2 {
		t.Errorf("v2 = %+v, %v", u, err)
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

// A pod cgroup made by path on this (v1) machine: missing parents made and
// removed with it, a process moved into a leaf, limits set, metrics read.
// makeTestPod makes a pod's cgroup where nothing was (/<top>/pod, two levels)
// and the leaf of its process (/<top>/pod/sandbox), as a sandbox's start
// does, and returns what Create made of each.
func makeTestPod(t *testing.T) (top string, pod, leaf *Cgroup, podMade, leafMade []string) {
	t.Helper()
	top = fmt.Sprintf("podv2-test-%08x", rand.Uint32())
	pod, err := LoadPath("/" + top + "/pod")
	if err != nil {
		t.Fatal(err)
	}
	if podMade, err = pod.Create(); err != nil {
		t.Fatal(err)
	}
	if leaf, err = pod.Child("sandbox"); err != nil {
		RemoveDirs(podMade)
		t.Fatal(err)
	}
	if leafMade, err = leaf.Create(); err != nil {
		RemoveDirs(podMade)
		t.Fatal(err)
	}
	return top, pod, leaf, podMade, leafMade
}

func TestPodCgroupV1Real(t *testing.T) {
	requireV1(t)
	top, pod, leaf, podMade, leafMade := makeTestPod(t)
	p := startHeld(t, "sleep", "1000")
	t.Cleanup(func() {
		for _, dir := range append(leaf.Directories(), pod.Directories()...) {
			removeTestCgroup(t, dir)
		}
		for _, dir := range pod.Directories() {
			removeTestCgroup(t, filepath.Dir(dir))
		}
	})
	if err := leaf.AddProc(p.pid); err != nil {
		t.Fatal(err)
	}
	procs, err := os.ReadFile(filepath.Join(leaf.dirs["memory"], "cgroup.procs"))
	if err != nil || strings.TrimSpace(string(procs)) != fmt.Sprint(p.pid) {
		t.Fatalf("leaf procs = %q, %v", procs, err)
	}
	if err := pod.Update(Resources{MemoryLimit: 64 << 20, CPUShares: 512, CPUPeriod: 50000, CPUQuota: 25000}); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(pod.dirs["memory"], "memory.limit_in_bytes"): fmt.Sprint(64 << 20),
		filepath.Join(pod.dirs["cpu"], "cpu.shares"):               "512",
		filepath.Join(pod.dirs["cpu"], "cpu.cfs_period_us"):        "50000",
		filepath.Join(pod.dirs["cpu"], "cpu.cfs_quota_us"):         "25000",
	} {
		if got, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s = %q, %v; want %s", file, got, err, want)
		}
	}
	m, err := pod.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v1 := m.(*v1stats.Metrics); v1.Pids == nil || v1.Pids.Current != 1 || v1.Memory == nil || v1.Memory.Usage.Limit != 64<<20 {
		t.Errorf("pod metrics = %v", m)
	}
	// Removal needs the cgroups empty: the process goes back to each
	// hierarchy's root.
	if err := RemoveDirs(leafMade); err == nil {
		t.Fatal("removed a cgroup that holds a process")
	}
	for _, dir := range leaf.Directories() {
		root := strings.TrimSuffix(dir, "/"+top+"/pod/sandbox")
		if err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(fmt.Sprint(p.pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveDirs(leafMade); err != nil {
		t.Fatal(err)
	}
	if n := len(pod.Directories()); len(podMade) != 2*n || len(leafMade) != n {
		t.Errorf("made %v and %v: want both levels of the pod, and the leaf, in each of %d hierarchies", podMade, leafMade, n)
	}
	if err := RemoveDirs(podMade); err != nil {
		t.Fatal(err)
	}
	for _, dir := range pod.Directories() {
		if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", filepath.Dir(dir), err)
		}
	}
}
