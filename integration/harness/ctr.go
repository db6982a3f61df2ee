package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// LogContains says whether containerd's log (which includes the shims' logs) contains s.
func (c *Containerd) LogContains(s string) bool {
	b, _ := os.ReadFile(c.LogPath)
	return bytes.Contains(b, []byte(s))
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
