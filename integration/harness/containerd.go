package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
