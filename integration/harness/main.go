package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/image"
)

// shared is what one test binary builds once: the shim and the image archive, in one temporary directory that Main
// removes at the end.
var shared struct {
	mu  sync.Mutex
	dir string

	shimOnce sync.Once
	shimDir  string
	shimErr  error

	faultyOnce sync.Once
	faultyPath string
	faultyErr  error

	archives map[string]*archive // by file name
}

// archive is an image archive built once per test binary.
type archive struct {
	once   sync.Once
	path   string
	result *image.Result
	err    error
}

// Main runs the tests of a package (call it from TestMain) and removes what the harness built.
func Main(m *testing.M) {
	if !checkHierarchies("before the tests") {
		os.Exit(1)
	}
	code := m.Run()
	if !checkHierarchies("after the tests") && code == 0 {
		code = 1
	}
	shared.mu.Lock()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

func sharedDir() (string, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.dir == "" {
		d, err := os.MkdirTemp("", "podv2-it-shared-")
		if err != nil {
			return "", err
		}
		shared.dir = d
	}
	return shared.dir, nil
}

// RepoRoot is the directory of the shim's module (github.com/podv2/containerd-shim-pod-v2), found upward from the
// working directory.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/podv2/containerd-shim-pod-v2\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of github.com/podv2/containerd-shim-pod-v2 above the working directory")
		}
		d = parent
	}
}

// PodProcessEntry is the symbol the shim must be linked with as its entry point (-ldflags=-E=...), as make build does:
// the pod's own process runs from it (pod/podproc).
const PodProcessEntry = "containerd_shim_pod_v2_entry"

// ShimDir returns a directory holding containerd-shim-pod-v2: $SHIM_BINARY (linked under that name) or a fresh
// `CGO_ENABLED=0 go build -trimpath -ldflags=-E=...` of ./cmd/containerd-shim-pod-v2 (as make build), once per test
// binary.
func ShimDir(t testing.TB) string {
	t.Helper()
	shared.shimOnce.Do(func() { shared.shimDir, shared.shimErr = buildShim() })
	if shared.shimErr != nil {
		t.Fatalf("shim: %v", shared.shimErr)
	}
	return shared.shimDir
}

// ShimPath is the path of our shim binary (see ShimDir).
func ShimPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(ShimDir(t), ShimName)
}

func buildShim() (string, error) {
	base, err := sharedDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, "shim-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, ShimName)
	if bin := os.Getenv("SHIM_BINARY"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("SHIM_BINARY: %w", err)
		}
		return dir, os.Symlink(abs, dst)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go not found on PATH: %w", err)
	}
	start := time.Now()
	args := []string{"build", "-trimpath"}
	if runtime.GOARCH == "amd64" {
		// As make build: the pod process's entry point (pod/podproc).
		args = append(args, "-ldflags=-E="+PodProcessEntry)
	}
	cmd := exec.Command(gobin, append(args, "-o", dst, "./cmd/containerd-shim-pod-v2")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/containerd-shim-pod-v2 in %s: %v\n%s", root, err, out)
	}
	fmt.Fprintf(os.Stderr, "harness: built %s in %v\n", dst, time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// FaultyRunc returns a runtime binary (for BinaryName) that wraps runc and
// fails in the given mode (see cmd/faultyrunc): built once per test binary,
// and linked under the name that selects the mode.
func FaultyRunc(t testing.TB, mode string) string {
	t.Helper()
	shared.faultyOnce.Do(func() { shared.faultyPath, shared.faultyErr = buildFaultyRunc() })
	if shared.faultyErr != nil {
		t.Fatalf("faultyrunc: %v", shared.faultyErr)
	}
	link := shared.faultyPath + "." + mode
	if err := os.Symlink(shared.faultyPath, link); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	return link
}

// Faulty is a faultyrunc of one test's own (see NewFaultyRunc).
type Faulty struct {
	Path string // the runtime binary to name in BinaryName
}

// NewFaultyRunc returns a faultyrunc in mode (see cmd/faultyrunc) that no
// other test shares: it fails until Heal, and is runc after.
func NewFaultyRunc(t testing.TB, mode string) *Faulty {
	t.Helper()
	FaultyRunc(t, mode) // built, and its directory searchable
	dir, err := os.MkdirTemp(filepath.Dir(shared.faultyPath), "faulty-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, filepath.Base(shared.faultyPath)+"."+mode)
	if err := os.Symlink(shared.faultyPath, link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &Faulty{Path: link}
}

// Heal makes the wrapper pass every command to runc from now on.
func (f *Faulty) Heal(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(f.Path+".healed", nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func buildFaultyRunc() (string, error) {
	base, err := sharedDir()
	if err != nil {
		return "", err
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(base, "faultyrunc")
	cmd := exec.Command("go", "build", "-o", dst, "./cmd/faultyrunc")
	cmd.Dir = filepath.Join(root, "integration")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/faultyrunc: %v\n%s", err, out)
	}
	// Runtimes run as the containers' users in user namespaces: the
	// directory must be searchable by all.
	if err := os.Chmod(base, 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

// ImageArchive returns the busybox OCI archive (built once per test binary) and what it holds.
func ImageArchive(t testing.TB) (string, *image.Result) {
	t.Helper()
	return imageArchive(t, "podtest-oci.tar", image.Options{})
}

// PauseArchive returns the pause image's OCI archive (image.PauseName, built once per test binary).
func PauseArchive(t testing.TB) (string, *image.Result) {
	t.Helper()
	return imageArchive(t, "pause-oci.tar", image.Options{Name: image.PauseName, Cmd: image.PauseCmd})
}

func imageArchive(t testing.TB, file string, o image.Options) (string, *image.Result) {
	t.Helper()
	shared.mu.Lock()
	if shared.archives == nil {
		shared.archives = map[string]*archive{}
	}
	a := shared.archives[file]
	if a == nil {
		a = &archive{}
		shared.archives[file] = a
	}
	shared.mu.Unlock()
	a.once.Do(func() {
		base, err := sharedDir()
		if err != nil {
			a.err = err
			return
		}
		a.path = filepath.Join(base, file)
		a.result, a.err = image.WriteFile(a.path, o)
	})
	if a.err != nil {
		t.Fatalf("building the image %s: %v", file, a.err)
	}
	return a.path, a.result
}

// cleanStderr drops the cgroup v1 deprecation warning that ctr 2.x prints on every command on this kind of host.
func cleanStderr(s string) string {
	if !strings.Contains(s, "DEPRECATION") {
		return s
	}
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, "DEPRECATION: The support for cgroup v1 is deprecated") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "")
}
