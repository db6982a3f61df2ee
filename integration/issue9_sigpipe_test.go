package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A binary:// logger is a child of the serving shim, and children inherit ignored signals: a logger that a shim
// running with SIGPIPE ignored starts never dies of a reader that went away, and a shell logger cannot even trap it
// back. The shim catches SIGPIPE and drops it instead, which exec resets to the default: the logger's SigIgn in
// /proc/PID/status has no SIGPIPE bit.
func TestBinaryLoggerGetsDefaultSIGPIPE(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		dir := filepath.Join(c.Dir, "sigpipe-logger")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "sigign")
		script := filepath.Join(dir, "logger.sh")
		body := "#!/bin/sh\n" +
			"grep '^SigIgn:' /proc/$$/status > " + out + ".tmp && mv " + out + ".tmp " + out + "\n" +
			"exec 5>&-\n" + // ready
			"cat <&3 >/dev/null &\n" +
			"cat <&4 >/dev/null\n" +
			"wait\n"
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		id := c.ID("sigpipe")
		c.MustCtr(t, "run", "--rm", "--runtime", c.Runtime, "--log-uri", "binary://"+script, c.Image, id, "echo", "hi")
		var line string
		harness.Eventually(t, 10*time.Second, "the logger records its ignored signals", func() bool {
			b, err := os.ReadFile(out)
			line = strings.TrimSpace(string(b))
			return err == nil
		})
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "SigIgn:")), 16, 64)
		if err != nil {
			t.Fatalf("logger's status line %q: %v", line, err)
		}
		const sigpipe = 13
		if mask&(1<<(sigpipe-1)) != 0 {
			t.Errorf("the binary logger started with SIGPIPE ignored (%s)", line)
		}
	})
}
