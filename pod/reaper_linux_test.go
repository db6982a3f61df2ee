//go:build linux

package pod

import (
	"os"
	"os/exec"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/process"
)

// CreatePinned under the shim's own reaper, a process-wide wait4(-1) loop. It
// runs in a child test process: the reaper would steal the other tests'
// children.
func TestCreatePinnedThroughReaper(t *testing.T) {
	needRoot(t)
	if os.Getenv("POD_TEST_REAPER") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCreatePinnedThroughReaper$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "POD_TEST_REAPER=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a child test process: %v\n%s", err, out)
		}
		return
	}
	r := process.Default()
	for i := range 20 {
		req := Request{NewUser: i%2 == 0, NewNet: true, UIDMappings: podMaps, GIDMappings: podMaps}
		dir := stateDir(t)
		ns, err := CreatePinned(dir, r, req)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := ns.Release(); err != nil {
			t.Fatal(err)
		}
	}
	noChildren(t)
}
