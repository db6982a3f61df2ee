#!/bin/bash
# Runs inside the cgroup v2 test VM, started by the image's podv2-vmtest unit from the host's 9p share (mounted at
# /mnt/podv2; run.sh puts this file there). It says what machine this is, runs the scenarios of
# integration/cgroup2 (the test binary built on the host) and the shim's own cgroup v2 unit tests, and writes their
# output to out/test.log and out/unit.log and their exit statuses to out/rc and out/unit-rc, where the host reads
# them. Its stdout is the serial console. The VM powers off when it ends.
set -u
SHARE=/mnt/podv2
OUT=$SHARE/out
BIN=/opt/podv2
rc=1
mkdir -p "$OUT"
unit_rc=1
# However this script ends, the host gets exit statuses: a missing rc means the guest never got this far.
trap 'echo "$rc" >"$OUT/rc"; echo "$unit_rc" >"$OUT/unit-rc"; sync' EXIT
say() { echo "guest: $*"; }

# shellcheck source=/dev/null
. "$SHARE/guest.env" # CGROUP2_RUN, CGROUP2_COUNT, CGROUP2_TIMEOUT, TEST_CONTAINERD, TEST_RUNTIME from the host

say "up $(cut -d' ' -f1 /proc/uptime) s; kernel $(uname -r); cmdline: $(cat /proc/cmdline)"
fs=$(stat -f -c %T /sys/fs/cgroup)
mount=$(awk '$2 == "/sys/fs/cgroup" { print $3, $4 }' /proc/mounts)
say "/sys/fs/cgroup: $fs ($mount); controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
if [ "$fs" != cgroup2fs ]; then
	say "FAIL: /sys/fs/cgroup is $fs, not cgroup2: the kernel did not come up with cgroup v2 only"
	exit 1
fi
# (Not is-system-running --wait: the boot is not over until this script, part of it, ends.)
say "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), state $(systemctl is-system-running 2>&1)"
say "$(runc --version | head -n1); containerd $(containerd --version | cut -d' ' -f3)"

# The binaries onto the VM's own disk: running them over 9p is slow under emulation.
mkdir -p "$BIN"
cp -a "$SHARE/bin/." "$BIN/" || exit 1
say "containerd $("$BIN/containerd24/containerd" --version | cut -d' ' -f3) (from the host)"

say "running the shim's cgroup v2 unit tests: cgroup-unit.test -test.run V2"
cd "$BIN" || exit 1
"$BIN/cgroup-unit.test" -test.v -test.count=1 -test.run V2 -test.timeout=5m 2>&1 | tee "$OUT/unit.log"
unit_rc=${PIPESTATUS[0]}

args=(-test.v -test.count="${CGROUP2_COUNT:-1}" -test.timeout="${CGROUP2_TIMEOUT:-20m}")
[ -n "${CGROUP2_RUN:-}" ] && args+=(-test.run "$CGROUP2_RUN")
say "running cgroup2.test ${args[*]}"
SHIM_BINARY=$BIN/containerd-shim-pod-v2 CONTAINERD24_DIR=$BIN/containerd24 TEST_LOG_DIR=$OUT/logs \
	TEST_CONTAINERD=${TEST_CONTAINERD:-} TEST_RUNTIME=${TEST_RUNTIME:-} \
	"$BIN/cgroup2.test" "${args[@]}" 2>&1 | tee "$OUT/test.log"
rc=${PIPESTATUS[0]}
say "cgroup2.test exited $rc after $(cut -d' ' -f1 /proc/uptime) s of uptime; powering off"
