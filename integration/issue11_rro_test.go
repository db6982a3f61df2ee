package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// treeWithSubmount is a host directory with a tmpfs mounted at sub, for read-only bind mounts of a tree; the tmpfs
// goes when t ends.
func treeWithSubmount(t *testing.T, c *harness.Containerd) string {
	t.Helper()
	src := filepath.Join(c.Dir, "rro-src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(src, "sub"), unix.MNT_DETACH) })
	return src
}

// runtimeConfig writes a TOML runtime config (runtimeoptions' ConfigPath: `ctr run --runtime-config-path`, or
// config_path in a CRI handler's options) and returns its path.
func runtimeConfig(t *testing.T, c *harness.Containerd, name, body string) string {
	t.Helper()
	p := filepath.Join(c.Dir, name+".toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 11, item 1: a read-only bind mount of a directory with a submount is read-only all the way down, for ctr too
// (not only CRI): with the policy IfPossible (the default), only at the top with Disabled (annotation
// io.containerd.pod.v2.rro, or treat_ro_mounts_as_rro in the runtime's config, which the annotation overrides), and
// with Enabled a runtime without rro (its features lack it) fails clearly and leaves nothing, where IfPossible falls
// back to plain read-only and logs it.
func TestReadOnlyBindMountsRecursive(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("the shim's rro policy is this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		src := treeWithSubmount(t, c)
		noRRO := harness.FaultyRunc(t, "no-rro")
		mount := fmt.Sprintf("type=bind,src=%s,dst=/mnt,options=rbind:ro", src)
		const probe = `touch /mnt/top 2>/dev/null; echo top=$?; touch /mnt/sub/f 2>/dev/null; echo sub=$?`
		run := func(id string, flags ...string) *harness.Result {
			args := append([]string{"run", "--rm", "--runtime", c.Runtime, "--mount", mount}, flags...)
			return c.CtrWith(harness.CtrOpts{}, append(args, c.Image, id, "sh", "-c", probe)...)
		}
		cases := []struct {
			name  string
			flags []string
			want  string
		}{
			{"default (IfPossible)", nil, "top=1 sub=1"},
			{"annotation Disabled", []string{"--annotation", "io.containerd.pod.v2.rro=Disabled"}, "top=1 sub=0"},
			{"annotation Enabled", []string{"--annotation", "io.containerd.pod.v2.rro=Enabled"}, "top=1 sub=1"},
			{"config Disabled", []string{"--runtime-config-path", runtimeConfig(t, c, "disabled", "treat_ro_mounts_as_rro = \"Disabled\"\n")}, "top=1 sub=0"},
			{"config Disabled, annotation IfPossible", []string{"--annotation", "io.containerd.pod.v2.rro=IfPossible",
				"--runtime-config-path", runtimeConfig(t, c, "disabled2", "treat_ro_mounts_as_rro = 'Disabled'\n")}, "top=1 sub=1"},
			{"IfPossible, runtime without rro", []string{"--runtime-config-path", runtimeConfig(t, c, "norro",
				fmt.Sprintf("BinaryName = %q\n", noRRO))}, "top=1 sub=0"},
		}
		for i, tc := range cases {
			id := c.ID(fmt.Sprintf("rro%d", i))
			r := run(id, tc.flags...)
			if got := strings.Join(strings.Fields(r.Stdout), " "); r.Code != 0 || got != tc.want {
				t.Errorf("%s: %q (exit %d, stderr %q), want %q", tc.name, got, r.Code, r.Stderr, tc.want)
			}
			c.CheckGone(t, id, id)
		}
		if !c.LogContains("left plain read-only") {
			t.Errorf("the fallback to plain read-only with a runtime without rro is not logged")
		}

		// Enabled where rro cannot be had: refused, naming the mount and why, and nothing is left.
		id := c.ID("rro-enabled")
		cfg := runtimeConfig(t, c, "enabled", fmt.Sprintf("BinaryName = %q\ntreat_ro_mounts_as_rro = \"Enabled\"\n", noRRO))
		r := run(id, "--runtime-config-path", cfg)
		if r.Code == 0 || !strings.Contains(r.Stderr, "/mnt") || !strings.Contains(r.Stderr, "recursively read-only") ||
			!strings.Contains(r.Stderr, "does not list rro") {
			t.Errorf("Enabled with a runtime without rro: exit %d, stderr %q; want a failure naming /mnt and why", r.Code, r.Stderr)
		}
		c.CtrWith(harness.CtrOpts{}, "containers", "rm", id) // ctr run --rm leaves the container record when the task fails
		c.CheckGone(t, id, id)
		if dir := harness.PodStateDir(c.Address, c.Namespace, id); harness.Exists(dir) {
			t.Errorf("the refused container's pod state %s is left", dir)
		}
	})
}
