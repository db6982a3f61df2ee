// Package integration is the integration suite of containerd-shim-pod-v2: the built shim under private containerd
// 1.6 and 2.4 daemons with real runc, driven through ctr and containerd's Go client. See harness for the knobs
// (TEST_RUNTIME=io.containerd.runc.v2 runs everything against the reference runtime).
package integration

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
