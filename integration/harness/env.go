// Package harness runs the shim under real, private containerd daemons for the integration suite.
//
// Every test gets its own containerd (root, state, sockets and config in a fresh temporary directory, never the
// host's /etc/containerd or /run/containerd/containerd.sock), in two flavours: Debian's containerd 1.6 and containerd
// 2.4 built by scripts/deps.sh. CRI tests (StartCRI) get a daemon with CRI serving, its own CNI bridge network and a
// pause image, driven through crictl. The shim is built once per test binary and put first in containerd's PATH, so that
// runtime io.containerd.pod.v2 resolves to it. The harness does not care which runtime a test drives: TEST_RUNTIME
// (default io.containerd.pod.v2) picks it, so every test can be validated against the reference runtime
// io.containerd.runc.v2 first.
//
// Environment:
//
//	TEST_RUNTIME      runtime the tests drive (io.containerd.pod.v2 | io.containerd.runc.v2)
//	TEST_CONTAINERD   "1.6", "2.4" or empty for both
//	SHIM_BINARY       use this containerd-shim-pod-v2 instead of building one
//	CONTAINERD24_DIR  where containerd 2.4's containerd, ctr and containerd-shim-runc-v2 are
//	                  (default /var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin)
//	CRICTL            the crictl of the CRI tests (default /var/cache/containerd-shim-pod-v2/cri-tools-v1.36.0/bin/crictl)
//	RUNC14            runc 1.4, for the tests of runtime-made id-mapped mounts
//	                  (default /var/cache/containerd-shim-pod-v2/runc-v1.4.3/bin/runc)
//	TEST_LOG_DIR      where the logs of failed tests are kept (default /tmp/podv2-integration-logs)
package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Runtime names.
const (
	RuntimePod  = "io.containerd.pod.v2"
	RuntimeRunc = "io.containerd.runc.v2"

	// PodAnnotation groups containers into one pod (one shim) under our runtime.
	PodAnnotation = "io.containerd.pod.v2.pod"
	// RuncGroupAnnotation groups containers under the reference shim (our shim accepts it too).
	RuncGroupAnnotation = "io.containerd.runc.v2.group"

	// ShimName is our shim's binary.
	ShimName = "containerd-shim-pod-v2"

	// DefaultContainerd24Dir is where scripts/deps.sh caches containerd 2.4.
	DefaultContainerd24Dir = "/var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin"

	// DefaultRunc14 is where scripts/deps.sh caches runc 1.4 (it has id-mapped mounts; Debian's 1.1.5 has not).
	DefaultRunc14 = "/var/cache/containerd-shim-pod-v2/runc-v1.4.3/bin/runc"

	// RuncRoot is the default state root of runc under both shims: runc runs with --root RuncRoot/<namespace>.
	RuncRoot = "/run/containerd/runc"
	// ShimSocketDir is where shims put their ttrpc sockets, whatever the containerd.
	ShimSocketDir = "/run/containerd/s"
	// SettingsEnv names the shim's settings file in containerd's environment (the shim reads
	// /etc/containerd/containerd-shim-pod-v2.toml without it).
	SettingsEnv = "CONTAINERD_SHIM_POD_V2_CONFIG"
	// PodStateRoot holds our shim's pod state directories, one per namespace and pod.
	PodStateRoot = "/run/containerd/io.containerd.pod.v2"
)

// Runtime is the runtime the tests drive: $TEST_RUNTIME, io.containerd.pod.v2 by default.
func Runtime() string {
	if r := os.Getenv("TEST_RUNTIME"); r != "" {
		return r
	}
	return RuntimePod
}

// IsOurs says whether runtime is ours (io.containerd.pod.v2). Checks of behaviour that only our shim promises are
// made only then.
func IsOurs(runtime string) bool { return runtime == RuntimePod }

// ShimBinaryName is the binary containerd looks for: io.containerd.pod.v2 -> containerd-shim-pod-v2.
func ShimBinaryName(runtime string) string {
	if filepath.IsAbs(runtime) {
		return filepath.Base(runtime)
	}
	parts := strings.Split(runtime, ".")
	if len(parts) < 2 {
		return "containerd-shim-" + runtime
	}
	return "containerd-shim-" + parts[len(parts)-2] + "-" + parts[len(parts)-1]
}

// GroupAnnotation is the annotation that puts containers into one pod (one shim) for runtime.
func GroupAnnotation(runtime string) string {
	if IsOurs(runtime) {
		return PodAnnotation
	}
	return RuncGroupAnnotation
}

// Flavour is one containerd build the suite runs under.
type Flavour struct {
	Name          string // subtest name: containerd-1.6, containerd-2.4
	Version       string // 1.6, 2.4
	Containerd    string // daemon binary
	Ctr           string // its ctr
	BinDir        string // directory holding its containerd-shim-runc-v2 (put in PATH after our shim)
	ConfigVersion int    // config.toml version: 2 for 1.6, 3 for 2.4
}

// Is16 says whether the flavour is containerd 1.6.
func (f Flavour) Is16() bool { return f.Version == "1.6" }

func containerd24Dir() string {
	if d := os.Getenv("CONTAINERD24_DIR"); d != "" {
		return d
	}
	return DefaultContainerd24Dir
}

// AllFlavours lists the flavours, without checking that they are installed.
func AllFlavours() []Flavour {
	d := containerd24Dir()
	return []Flavour{
		{Name: "containerd-1.6", Version: "1.6", Containerd: "/usr/bin/containerd", Ctr: "/usr/bin/ctr", BinDir: "/usr/bin", ConfigVersion: 2},
		{Name: "containerd-2.4", Version: "2.4", Containerd: filepath.Join(d, "containerd"), Ctr: filepath.Join(d, "ctr"), BinDir: d, ConfigVersion: 3},
	}
}

// Flavours are the flavours selected by $TEST_CONTAINERD; it fails t when one of them is not installed.
func Flavours(t testing.TB) []Flavour {
	t.Helper()
	sel := os.Getenv("TEST_CONTAINERD")
	var out []Flavour
	for _, f := range AllFlavours() {
		if sel != "" && sel != "all" && sel != f.Version && sel != f.Name {
			continue
		}
		if err := f.check(); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatalf("TEST_CONTAINERD=%q selects no containerd (want 1.6, 2.4 or empty)", sel)
	}
	return out
}

func (f Flavour) check() error {
	hint := "install it with scripts/deps.sh (make deps), as root"
	for _, b := range []string{f.Containerd, f.Ctr, filepath.Join(f.BinDir, "containerd-shim-runc-v2"), "/usr/sbin/runc", "/bin/busybox"} {
		st, err := os.Stat(b)
		if err != nil {
			return fmt.Errorf("%s is missing: %s", b, hint)
		}
		if st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable: %s", b, hint)
		}
	}
	return nil
}

// CheckRoot fails t unless the suite runs as root.
func CheckRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the integration suite must run as root (it starts containerd and runc); run: sudo make integration")
	}
}

// Runc14 is runc 1.4 ($RUNC14 or DefaultRunc14); it fails t unless that is an executable runc 1.4.
func Runc14(t testing.TB) string {
	t.Helper()
	p := os.Getenv("RUNC14")
	if p == "" {
		p = DefaultRunc14
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "runc version 1.4.") {
		t.Fatalf("runc 1.4 at %s: %v %q: build it with scripts/deps.sh (make deps), as root", p, err, out)
	}
	return p
}
