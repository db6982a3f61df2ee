//go:build cgroup2vm

package cgroup2

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Drivers are runc's cgroup drivers, as the runtime option SystemdCgroup picks them.
const (
	driverCgroupfs = "cgroupfs"
	driverSystemd  = "systemd"
)

// Emulated (TCG) machines are several times slower than native ones: every wait allows for that.
const (
	waitShort = 30 * time.Second
	waitLong  = 90 * time.Second
)

// env is one containerd flavour under one cgroup driver: its daemon, a client and its events, shared by the
// scenarios run under it.
type env struct {
	c       *harness.Containerd
	cl      *client.Client
	events  *harness.Events
	driver  string
	version string // containerd --version, short
	fsType  string // of /sys/fs/cgroup
}

func newEnv(t *testing.T, c *harness.Containerd, driver, version, fsType string) *env {
	t.Helper()
	cl, err := client.New(c.Address, client.WithDefaultNamespace(c.Namespace), client.WithTimeout(waitShort))
	if err != nil {
		t.Fatalf("client.New(%s): %v", c.Address, err)
	}
	t.Cleanup(func() { cl.Close() })
	return &env{c: c, cl: cl, events: c.Events(t), driver: driver, version: version, fsType: fsType}
}

func (e *env) systemd() bool { return e.driver == driverSystemd }

// ctx is a context for one scenario's client calls.
func (e *env) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// report collects what a scenario checked, and prints it as one line when the scenario ends.
type report struct {
	mu     sync.Mutex
	checks []string
}

// scenario starts the report of a scenario run as subtest t.
func (e *env) scenario(t *testing.T, name string) *report {
	r := &report{}
	t.Cleanup(func() {
		status := "PASS"
		if t.Failed() {
			status = "FAIL"
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		fmt.Printf("CGROUP2 %s scenario=%s fs=%s containerd=%s driver=%s: %s\n",
			status, name, e.fsType, e.version, e.driver, strings.Join(r.checks, "; "))
	})
	return r
}

// checked records one check that held.
func (r *report) checked(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, fmt.Sprintf(format, args...))
}

// containerdVersion is the version containerd f reports ("1.6.20~ds1", "v2.4.2").
func containerdVersion(t *testing.T, f harness.Flavour) string {
	t.Helper()
	out, err := exec.Command(f.Containerd, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", f.Containerd, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		t.Fatalf("%s --version: unexpected %q", f.Containerd, out)
	}
	return strings.TrimPrefix(fields[2], "v")
}

// systemctl runs systemctl and returns its trimmed output.
func systemctl(args ...string) (string, error) {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}

// unitState is a systemd unit's LoadState and ActiveState.
func unitState(unit string) (load, active string, err error) {
	out, err := systemctl("show", "--property=LoadState,ActiveState", unit)
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "LoadState="); ok {
			load = v
		}
		if v, ok := strings.CutPrefix(l, "ActiveState="); ok {
			active = v
		}
	}
	return load, active, nil
}

// mustMkdirCgroup makes a cgroup directly under the root, removed (once empty) when t ends.
func mustMkdirCgroup(t *testing.T, name string) string {
	t.Helper()
	dir := cgroupRoot + "/" + name
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mkdir cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}
