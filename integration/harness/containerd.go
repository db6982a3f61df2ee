package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Options change how Start sets up a containerd.
type Options struct {
	// Runtime the test drives (default: Runtime()).
	Runtime string
	// CRI keeps the CRI plugins (they are disabled by default: slow to start, and not needed by ctr).
	CRI bool
	// NoImage skips importing the busybox image.
	NoImage bool
	// ExtraConfig is TOML appended to config.toml.
	ExtraConfig string
	// Env is added to containerd's environment, which the shims it starts
	// inherit (e.g. the shim's fault points, CONTAINERD_SHIM_POD_V2_FAULTS).
	Env []string
}

// Containerd is a private containerd daemon started for one test.
type Containerd struct {
	T       testing.TB
	Flavour Flavour
	Options Options

	Dir          string // everything below lives here and goes at the end
	Root         string
	State        string
	Address      string // grpc socket
	TTRPCAddress string
	ConfigPath   string
	LogPath      string
	FifoDir      string      // for tests that want their stdio fifos inside Dir
	Namespace    string      // unique per daemon: keeps runc state (/run/containerd/runc/<ns>) and cgroups apart
	Runtime      string      // the runtime the tests drive
	Image        string      // the busybox image, once imported
	PATH         string      // containerd's PATH (our shim first)
	CNI          *CNINetwork // the pods' network, with Options.CRI

	// Run by Stop: beforeStop while containerd still serves (last added first), afterStop once it is gone.
	beforeStop, afterStop []func(t testing.TB)

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	logFile *os.File
	ids     atomic.Int64
	idsMu   sync.Mutex
	issued  []string
	stopped bool
}

// ForEach runs fn as one subtest per containerd flavour (containerd-1.6, containerd-2.4), each with its own daemon
// started with default options and the image imported.
func ForEach(t *testing.T, fn func(t *testing.T, c *Containerd)) {
	ForEachWith(t, Options{}, fn)
}

// ForEachWith is ForEach with options.
func ForEachWith(t *testing.T, o Options, fn func(t *testing.T, c *Containerd)) {
	t.Helper()
	CheckRoot(t)
	for _, f := range Flavours(t) {
		t.Run(f.Name, func(t *testing.T) {
			c := Start(t, f, o)
			fn(t, c)
		})
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Start starts a private containerd of flavour f for t; it is stopped and everything it left is removed when t ends.
func Start(t testing.TB, f Flavour, o Options) *Containerd {
	t.Helper()
	CheckRoot(t)
	if err := f.check(); err != nil {
		t.Fatalf("%s: %v", f.Name, err)
	}
	if o.Runtime == "" {
		o.Runtime = Runtime()
	}
	// A short path: unix socket paths are limited to 108 bytes, and t.TempDir's names are long.
	dir, err := os.MkdirTemp("", "podv2-it-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{
		T: t, Flavour: f, Options: o, Dir: dir,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		Address:      filepath.Join(dir, "containerd.sock"),
		TTRPCAddress: filepath.Join(dir, "containerd.sock.ttrpc"),
		ConfigPath:   filepath.Join(dir, "config.toml"),
		LogPath:      filepath.Join(dir, "containerd.log"),
		FifoDir:      filepath.Join(dir, "fifo"),
		Namespace:    "podv2-it-" + randomHex(4),
		Runtime:      o.Runtime,
		exited:       make(chan struct{}),
	}
	t.Cleanup(c.Stop)
	for _, d := range []string{c.Root, c.State, c.FifoDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if o.CRI {
		if c.CNI, err = newCNINetwork(dir, strings.TrimPrefix(c.Namespace, "podv2-it-")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(c.SettingsPath(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.config()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// Our shim first in PATH (only built when a test drives it), then the flavour's own reference shim (containerd
	// 2.4 cannot start Debian's 1.6 containerd-shim-runc-v2), then the system. containerd 2.x caches the binary it
	// resolved for a runtime name, so PATH must be right from the start.
	var path []string
	if IsOurs(o.Runtime) {
		path = append(path, ShimDir(t))
	}
	path = append(path, f.BinDir, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	c.PATH = strings.Join(path, ":")

	c.logFile, err = os.Create(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.launch(t)
	t.Logf("%s: pid %d, dir %s, namespace %s, runtime %s", f.Name, cmd.Process.Pid, dir, c.Namespace, c.Runtime)
	if !o.NoImage {
		c.ImportImage(t)
	}
	return c
}

// launch starts the daemon with the config written and waits until it serves.
func (c *Containerd) launch(t testing.TB) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(c.Flavour.Containerd, "--config", c.ConfigPath)
	cmd.Env = append(filterEnv(os.Environ(), "PATH", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "TTRPC_ADDRESS", "GRPC_ADDRESS", "NAMESPACE"), "PATH="+c.PATH)
	cmd.Env = append(cmd.Env, SettingsEnv+"="+c.SettingsPath())
	cmd.Env = append(cmd.Env, c.Options.Env...)
	cmd.Stdout = c.logFile
	cmd.Stderr = c.logFile
	cmd.Dir = c.Dir
	// Own process group (a ^C of the test does not hit it first), and SIGTERM should the test binary die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	exited := make(chan struct{})
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", c.Flavour.Containerd, err)
	}
	c.cmd, c.exited = cmd, exited
	go func() {
		c.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := c.waitReady(30 * time.Second); err != nil {
		c.dumpLog(t, 200)
		t.Fatalf("%s did not come up: %v", c.Flavour.Name, err)
	}
	return cmd
}

// Restart stops containerd with SIGTERM, which leaves its shims running, and starts it again with the same config
// and environment: it reloads its shims and sandboxes from its state directory.
func (c *Containerd) Restart(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM containerd: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("containerd did not stop on SIGTERM within 20s")
	}
	cmd := c.launch(t)
	t.Logf("%s restarted: pid %d", c.Flavour.Name, cmd.Process.Pid)
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, e := range env {
		for _, d := range drop {
			if strings.HasPrefix(e, d+"=") {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func (c *Containerd) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return fmt.Errorf("containerd exited: %v", c.waitErr)
		default:
		}
		if _, err := os.Stat(c.Address); err == nil {
			r := c.CtrWith(CtrOpts{Timeout: 5 * time.Second}, "version")
			if r.Code == 0 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s within %v", c.Address, timeout)
}

// disabledPlugins are plugins a private test daemon does not need: CRI (slow, and ours is not a Kubernetes node),
// snapshotters that probe the host, NRI (it would create /var/run/nri/nri.sock on the host), /opt/containerd, tracing.
func (c *Containerd) disabledPlugins() []string {
	common := []string{
		"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
		"io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
	}
	var cri, other []string
	if c.Flavour.Is16() {
		cri = []string{"io.containerd.grpc.v1.cri"}
		other = []string{"io.containerd.snapshotter.v1.aufs"}
	} else {
		cri = []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
			"io.containerd.podsandbox.controller.v1.podsandbox"}
		other = []string{"io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
			"io.containerd.differ.v1.erofs", "io.containerd.nri.v1.nri"}
	}
	out := append(common, other...)
	if !c.Options.CRI {
		out = append(out, cri...)
	}
	return out
}

func (c *Containerd) config() (string, error) {
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	fmt.Fprintf(&b, "# written by the containerd-shim-pod-v2 integration harness\nversion = %d\n", c.Flavour.ConfigVersion)
	fmt.Fprintf(&b, "root = %s\nstate = %s\n", q(c.Root), q(c.State))
	b.WriteString("imports = []\noom_score = 0\n")
	var dis []string
	for _, p := range c.disabledPlugins() {
		dis = append(dis, q(p))
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(dis, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n[ttrpc]\n  address = %s\n\n", q(c.Address), q(c.TTRPCAddress))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"debug\"\n\n[metrics]\n  address = \"\"\n\n")
	if c.Options.CRI {
		b.WriteString(c.criConfig())
	}
	// The runtime registration, as the README shows it (or the same snippet built in, while the README has none),
	// with runtime_path naming the shim under test. ctr does not need it (--runtime io.containerd.pod.v2 works by
	// name); it proves the snippet loads, and CRI's handler "pod" is it.
	snippet, _, err := READMERuntimeSnippet(c.Flavour.ConfigVersion)
	if err != nil {
		return "", err
	}
	b.WriteString(WithSettingsPath(WithShimPath(snippet, ShimPath(c.T)), c.SettingsPath()))
	b.WriteString("\n")
	if c.Options.ExtraConfig != "" {
		b.WriteString(c.Options.ExtraConfig)
		b.WriteString("\n")
	}
	return b.String(), nil
}

var (
	tomlBlock   = regexp.MustCompile("(?s)```toml\n(.*?)```")
	runtimePath = regexp.MustCompile(`(?m)^(\s*runtime_path\s*=\s*)"[^"]*"`)
)

// READMERuntimeSnippet returns the README's config.toml block for the config version (2: containerd 1.6/1.7,
// 3: containerd 2.x) that registers the shim (runtime_path ending in containerd-shim-pod-v2, or runtime_type
// io.containerd.pod.v2), without its `version` line, and whether it came from the README (false: the built-in copy).
func READMERuntimeSnippet(version int) (string, bool, error) {
	if root, err := RepoRoot(); err == nil {
		if b, err := os.ReadFile(filepath.Join(root, "README.md")); err == nil {
			for _, m := range tomlBlock.FindAllStringSubmatch(string(b), -1) {
				lines := strings.Split(strings.TrimSpace(m[1]), "\n")
				if len(lines) > 1 && strings.TrimSpace(lines[0]) == fmt.Sprintf("version = %d", version) &&
					(strings.Contains(m[1], ShimName+`"`) || strings.Contains(m[1], `runtime_type = "io.containerd.pod.v2"`)) {
					return strings.Join(lines[1:], "\n") + "\n", true, nil
				}
			}
		}
	}
	switch version {
	case 2:
		return `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pod]
  runtime_type = "io.containerd.pod.v2"
  pod_annotations = ["io.containerd.pod.v2.*"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pod.options]
    BinaryName = "/usr/sbin/runc"
    SystemdCgroup = false
`, false, nil
	case 3:
		return `[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "/usr/local/bin/containerd-shim-pod-v2"
  pod_annotations = ["io.containerd.pod.v2.*"]
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod.options]
    BinaryName = "/usr/sbin/runc"
    SystemdCgroup = false
`, false, nil
	}
	return "", false, fmt.Errorf("no runtime snippet for config version %d", version)
}

// SettingsPath is the shim's settings file for this daemon (see the README): its shims read it, never the host's.
// It exists (empty: the defaults) unless a test writes it.
func (c *Containerd) SettingsPath() string { return filepath.Join(c.Dir, "shim-settings.toml") }

var configPath = regexp.MustCompile(`(?m)^(\s*ConfigPath\s*=\s*)"[^"]*"`)

// WithSettingsPath returns the snippet with its ConfigPath (if any) set to path.
func WithSettingsPath(snippet, path string) string {
	return configPath.ReplaceAllString(snippet, fmt.Sprintf("${1}%q", path))
}

// WithShimPath returns the snippet with its runtime_path (if any) set to shim.
func WithShimPath(snippet, shim string) string {
	return runtimePath.ReplaceAllString(snippet, fmt.Sprintf("${1}%q", shim))
}

// ID returns a container id (or pod key) unique within this daemon: prefix-N. Stop looks for shim sockets of the
// ids handed out.
func (c *Containerd) ID(prefix string) string {
	id := fmt.Sprintf("%s-%d", prefix, c.ids.Add(1))
	c.idsMu.Lock()
	c.issued = append(c.issued, id)
	c.idsMu.Unlock()
	return id
}

// ImportImage imports the busybox image (see package image) and sets c.Image.
func (c *Containerd) ImportImage(t testing.TB) {
	t.Helper()
	archive, img := ImageArchive(t)
	c.importArchive(t, c.Namespace, archive, img.Name)
	c.Image = img.Name
}

// importArchive imports an image archive into containerd namespace ns and checks that ctr lists it as name.
func (c *Containerd) importArchive(t testing.TB, ns, archive, name string) {
	t.Helper()
	// Both ctr versions import an OCI layout archive without flags: the index entry carries the platform
	// (linux/amd64) and the io.containerd.image.name annotation, and both unpack it into the default snapshotter
	// (overlayfs). ctr 2.x goes through the transfer service unless --local is given.
	r := c.CtrWith(CtrOpts{Timeout: 60 * time.Second, Namespace: ns}, "images", "import", archive)
	if r.Code != 0 {
		c.dumpLog(t, 100)
		t.Fatalf("importing the image %s: %v", name, r)
	}
	r = c.CtrWith(CtrOpts{Namespace: ns}, "images", "ls", "-q")
	if r.Code != 0 || !strings.Contains(r.Stdout, name) {
		t.Fatalf("image %s not listed after import: %v", name, r)
	}
}

// dumpLog writes the last n lines of containerd's log to the test log.
func (c *Containerd) dumpLog(t testing.TB, n int) {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		t.Logf("containerd log: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), c.LogPath, strings.Join(lines, "\n"))
}

// LogContains says whether containerd's log (which includes the shims' logs) contains s.
func (c *Containerd) LogContains(s string) bool {
	b, _ := os.ReadFile(c.LogPath)
	return bytes.Contains(b, []byte(s))
}

// Stop stops containerd and removes every trace of it: containers and tasks of its namespace, shims still serving it,
// runc state and cgroups of its namespace, shim sockets of the ids it handed out, mounts under Dir, Dir itself. On a
// failed test the log is dumped and kept under $TEST_LOG_DIR. Registered with t.Cleanup by Start; safe to call twice.
//
// Under our runtime, a shim socket left after every container is deleted and the shims have exited fails the test
// (the contract: the shim removes its socket when its last container goes, and `delete` does after a crash).
func (c *Containerd) Stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	t := c.T
	running := false
	select {
	case <-c.exited:
	default:
		running = c.cmd != nil
	}
	if running {
		for i := len(c.beforeStop) - 1; i >= 0; i-- {
			c.beforeStop[i](t)
		}
		c.removeAll(t)
		if !WaitUntil(5*time.Second, func() bool { return len(ProcessesWithArg(c.Address)) == 0 }) {
			t.Logf("cleanup: processes still serving %s after every container was deleted: %v", c.Address, ProcessesWithArg(c.Address))
		}
		c.checkSockets(t, true)
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Logf("containerd did not stop on SIGTERM in 10s: SIGKILL")
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.logFile != nil {
		c.logFile.Close()
	}
	// Shims serving this daemon (identified by its unique socket path in their command line).
	for _, p := range ProcessesWithArg(c.Address) {
		t.Logf("cleanup: killing leftover process %d %q", p.PID, p.Cmdline)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	// Sandboxes' own processes a killed shim left (their cgroups are under the daemon's namespace).
	for _, p := range c.podProcesses() {
		t.Logf("cleanup: killing leftover pod process %d %q", p.PID, p.Cmdline)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	c.checkSockets(t, false)
	// Containers runc still knows in our namespace.
	nsRoot := filepath.Join(RuncRoot, c.Namespace)
	if ents, err := os.ReadDir(nsRoot); err == nil {
		for _, e := range ents {
			t.Logf("cleanup: runc delete --force %s", e.Name())
			out, err := exec.Command("runc", "--root", nsRoot, "delete", "--force", e.Name()).CombinedOutput()
			if err != nil {
				t.Logf("cleanup: runc delete %s: %v %s", e.Name(), err, out)
			}
		}
		os.Remove(nsRoot)
	}
	for _, m := range MountsUnder(c.Dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	// The pods' state of this daemon's namespace: pins a shim killed above
	// could not release.
	podState := filepath.Join(PodStateRoot, c.Namespace)
	for _, m := range slices.Backward(MountsUnder(podState)) {
		t.Logf("cleanup: unmount %s", m)
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	os.RemoveAll(podState)
	for _, f := range c.afterStop {
		f(t)
	}
	removeCgroups(c.Namespace)
	if t.Failed() {
		c.dumpLog(t, 150)
		c.keepLog(t)
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// checkSockets looks for shim sockets named after the ids and pod keys handed out by ID. strict: fail the test if
// one is left under our runtime; otherwise log and remove them.
func (c *Containerd) checkSockets(t testing.TB, strict bool) {
	c.idsMu.Lock()
	keys := append([]string(nil), c.issued...)
	c.idsMu.Unlock()
	var socks, names []string
	for _, k := range keys {
		// A shim started with -debug (containerd at debug level) may also listen on <key>/debug (2.x's does).
		socks = append(socks, c.ShimSocketAddress(k), c.ShimSocketAddress(filepath.Join(k, "debug")))
		names = append(names, k, k+"/debug")
	}
	for i, addr := range socks {
		sock, k := strings.TrimPrefix(addr, "unix://"), names[i]
		if !Exists(sock) {
			continue
		}
		if strict && IsOurs(c.Runtime) {
			t.Errorf("shim socket %s (key %s) left after every container was deleted", sock, k)
		}
		if !strict || !IsOurs(c.Runtime) {
			t.Logf("cleanup: removing shim socket %s (key %s) left by %s", sock, k, c.Runtime)
			os.Remove(sock)
			os.Remove(sock + ".lock")
		}
	}
}

// removeAll deletes every task and container of the namespace through containerd.
func (c *Containerd) removeAll(t testing.TB) {
	opts := CtrOpts{Timeout: 20 * time.Second}
	r := c.CtrWith(opts, "tasks", "ls", "-q")
	for _, id := range strings.Fields(r.Stdout) {
		c.CtrWith(opts, "tasks", "kill", "-a", "-s", "SIGKILL", id)
		c.CtrWith(opts, "tasks", "rm", "-f", id)
	}
	r = c.CtrWith(opts, "containers", "ls", "-q")
	for _, id := range strings.Fields(r.Stdout) {
		if r := c.CtrWith(opts, "containers", "rm", id); r.Code != 0 {
			t.Logf("cleanup: %v", r)
		}
	}
}

func (c *Containerd) keepLog(t testing.TB) {
	dir := os.Getenv("TEST_LOG_DIR")
	if dir == "" {
		dir = "/tmp/podv2-integration-logs"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(t.Name(), "_")
	dst := filepath.Join(dir, name+".log")
	src, err := os.Open(c.LogPath)
	if err != nil {
		return
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		return
	}
	defer out.Close()
	if _, err := io.Copy(out, src); err == nil {
		t.Logf("containerd log kept in %s", dst)
	}
}

// removeCgroups removes the (empty) cgroups ctr created for the namespace: ctr's default cgroup path is
// /<namespace>/<id>, under every v1 hierarchy and the unified one.
func removeCgroups(ns string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	if st, err := os.Stat("/sys/fs/cgroup/" + ns); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/"+ns)
	}
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			os.Remove(d)
		}
	}
}

// CtrOpts change how a ctr command runs.
type CtrOpts struct {
	Stdin     io.Reader
	Timeout   time.Duration // default 60s
	Namespace string        // default c.Namespace
	Env       []string
}

// Result of a ctr (or crictl) command.
type Result struct {
	Tool   string // "ctr" when empty
	Args   []string
	Stdout string
	Stderr string // without ctr 2.x's cgroup v1 deprecation warning
	Code   int    // exit code; -1 when it could not run or was killed at the timeout
	Err    error
	Took   time.Duration
}

func (r *Result) String() string {
	tool := r.Tool
	if tool == "" {
		tool = "ctr"
	}
	return fmt.Sprintf("%s %s: exit %d (err %v, %v)\nstdout: %q\nstderr: %q", tool, strings.Join(r.Args, " "), r.Code, r.Err,
		r.Took.Round(time.Millisecond), truncate(r.Stdout, 2000), truncate(r.Stderr, 2000))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("...(%d more bytes)", len(s)-n)
}

// Ctr runs `ctr --address <ours> --namespace <ours> args...` with a 60 s timeout.
func (c *Containerd) Ctr(args ...string) (stdout, stderr string, code int) {
	r := c.CtrWith(CtrOpts{}, args...)
	return r.Stdout, r.Stderr, r.Code
}

// MustCtr runs ctr and fails t unless it exits 0; it returns stdout.
func (c *Containerd) MustCtr(t testing.TB, args ...string) string {
	t.Helper()
	r := c.CtrWith(CtrOpts{}, args...)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	return r.Stdout
}

// CtrWith runs ctr with options.
func (c *Containerd) CtrWith(o CtrOpts, args ...string) *Result {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	ns := o.Namespace
	if ns == "" {
		ns = c.Namespace
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	full := append([]string{"--address", c.Address, "--namespace", ns}, args...)
	cmd := exec.CommandContext(ctx, c.Flavour.Ctr, full...)
	cmd.Env = append(filterEnv(os.Environ(), "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SNAPSHOTTER"), o.Env...)
	cmd.Stdin = o.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := &Result{Args: args, Stdout: stdout.String(), Stderr: cleanStderr(stderr.String()), Err: err, Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.Code = 0
	case ctx.Err() != nil:
		r.Code = -1
		r.Err = fmt.Errorf("timed out after %v: %w", o.Timeout, err)
	case errors.As(err, &ee) && ee.Exited():
		r.Code = ee.ExitCode()
	default:
		r.Code = -1
	}
	return r
}

// StdinAfter returns a reader for a ctr command's stdin that yields data and then holds EOF back until ready() holds
// (polled, at most 30 s). ctr closes the task's stdin (CloseIO) when its own stdin ends, but only once the task
// exists: an EOF read before that is lost and the container never sees it (a race in ctr 1.6 and 2.4 alike), so
// the EOF must wait until ctr has the task, e.g. until `ctr tasks ls` shows it RUNNING (ctr starts it only after).
func StdinAfter(data []byte, ready func() bool) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		if _, err := pw.Write(data); err != nil {
			return
		}
		WaitUntil(30*time.Second, ready)
		pw.Close()
	}()
	return pr
}

// TaskListed says whether `ctr tasks ls` lists id.
func (c *Containerd) TaskListed(id string) bool {
	out, _, code := c.Ctr("tasks", "ls", "-q")
	return code == 0 && containsLine(out, id)
}

// LogLines returns the lines of containerd's log that contain s.
func (c *Containerd) LogLines(s string) []string {
	b, _ := os.ReadFile(c.LogPath)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
