package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CrictlVersion is the cri-tools release scripts/deps.sh builds crictl from (through the Go module proxy).
const CrictlVersion = "v1.36.0"

// DefaultCrictl is where scripts/deps.sh caches crictl, keyed by version.
const DefaultCrictl = "/var/cache/containerd-shim-pod-v2/cri-tools-" + CrictlVersion + "/bin/crictl"

// CrictlPath is $CRICTL or DefaultCrictl; it fails t when that is not an executable crictl of CrictlVersion.
func CrictlPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CRICTL")
	if p == "" {
		p = DefaultCrictl
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("crictl %s: %v %s: build it with scripts/deps.sh (make deps), as root", p, err, out)
	}
	if want := "crictl version " + strings.TrimPrefix(CrictlVersion, "v"); !strings.Contains(string(out), want) {
		t.Fatalf("%s --version: %q, want %q: rebuild it with scripts/deps.sh (make deps)", p, strings.TrimSpace(string(out)), want)
	}
	return p
}

// Crictl runs `crictl --config <this daemon's> args...` (60 s timeout); code is -1 when it could not run or timed out.
func (c *CRI) Crictl(args ...string) *Result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.CrictlBin, append([]string{"--config", c.crictlConfig}, args...)...)
	cmd.Env = filterEnv(os.Environ(), "CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT", "CRI_CONFIG_FILE")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := &Result{Tool: "crictl", Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.Code, r.Err = -1, fmt.Errorf("timed out: %w", err)
	case errors.As(err, &ee) && ee.Exited():
		r.Code = ee.ExitCode()
	default:
		r.Code = -1
	}
	return r
}

// MustCrictl runs crictl and fails t unless it exits 0; it returns stdout without its trailing newline.
func (c *CRI) MustCrictl(t testing.TB, args ...string) string {
	t.Helper()
	r := c.Crictl(args...)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// writeCrictlConfig points crictl at this daemon only (never the host's /etc/crictl.yaml or socket).
func (c *CRI) writeCrictlConfig() error {
	cfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\ndebug: false\npull-image-on-create: false\n",
		c.Address, c.Address)
	return os.WriteFile(c.crictlConfig, []byte(cfg), 0o600)
}
