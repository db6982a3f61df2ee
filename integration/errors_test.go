package integration

import (
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// Invalid container ids through ctr. containerd validates a container id (identifiers.Validate: letters and digits in
// runs joined by single '.', '_' or '-', at most 76 characters) when the container record is created, before any
// shim runs, under 1.6 and 2.4 alike. So ids with "..", "/" or a leading separator never reach a shim through ctr:
// this test checks containerd's own refusal and that no shim was started. What a shim does with such an id when it
// does receive one is tested at the ttrpc level in TestShimTTRPC.
func TestInvalidIDs(t *testing.T) {
	harness.ForEach(t, func(t *testing.T, c *harness.Containerd) {
		for _, id := range []string{"a..b", "../evil", "a/b", "/abs", "..", ".hidden", "_lead", "trail-", strings.Repeat("x", 77)} {
			r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "true")
			if r.Code == 0 {
				t.Errorf("ctr run with id %q succeeded", id)
				continue
			}
			if !strings.Contains(r.Stderr, "invalid") {
				t.Errorf("id %q: want an error saying invalid: %v", id, r)
			}
		}
		// An empty id: ctr refuses it itself.
		r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, c.Image, "", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "id") {
			t.Errorf("empty id: %v", r)
		}
		if out := c.MustCtr(t, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("containers created: %q", out)
		}
		if shims := c.ShimProcesses(c.Runtime, ""); len(shims) != 0 {
			t.Errorf("shims started for invalid ids: %v", shims)
		}
		// A valid id still works afterwards.
		id := c.ID("valid.id_after-invalid")
		if r := c.CtrWith(harness.CtrOpts{}, "run", "--rm", "--runtime", c.Runtime, c.Image, id, "echo", "ok"); r.Code != 0 || r.Stdout != "ok\n" {
			t.Fatalf("valid id %s: %v", id, r)
		}
	})
}
