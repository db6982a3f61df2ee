//go:build cgroup2vm

// Package cgroup2 holds the cgroup v2 scenarios, run inside the test VM that scripts/cgroup2-vm boots (a kernel
// with cgroup2 only, systemd as init): the shim under containerd 1.6 and 2.4, with runc's cgroupfs driver
// (SystemdCgroup = false) and its systemd driver (SystemdCgroup = true). They need that machine, so they build
// only with the tag cgroup2vm and fail, rather than skip, anywhere cgroup2 is not mounted at /sys/fs/cgroup.
//
// Each scenario prints one line for the log's reader, saying what ran and what was checked:
//
//	CGROUP2 PASS scenario=update fs=cgroup2fs containerd=1.6.20 driver=systemd: memory.max read back 67108864; ...
package cgroup2

import (
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
