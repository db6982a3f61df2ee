#!/bin/bash
# verdict.sh OUT [FULL]: judges a VM run by what the guest left in OUT: rc and test.log (the scenarios' exit status
# and -test.v output), unit-rc and unit.log (the same of the shim's cgroup v2 unit tests). Prints the scenario
# lines, then PASS or FAIL with the reason; exits 0 only on PASS.
# FULL=1 (the default) also demands every containerd flavour and cgroup driver: a run narrowed with CGROUP2_RUN or
# TEST_CONTAINERD passes FULL=0. Nothing missing passes: no rc, no log, a skipped test, a scenario without its
# report line are all failures.
set -euo pipefail

out=$1
full=${2:-1}
log=$out/test.log
COMBOS=(containerd-1.6/cgroupfs containerd-1.6/systemd containerd-2.4/cgroupfs containerd-2.4/systemd)

fail() {
	echo "test-cgroup2: FAIL: $*"
	exit 1
}

[ -f "$out/rc" ] || fail "the guest wrote no exit status: it never ran its tests or did not finish (see its console)"
[ -f "$log" ] || fail "the guest wrote no test.log"
echo "== scenarios run in the VM (kernel's cgroup fs, containerd, driver, what was checked):"
grep '^CGROUP2 ' "$log" || true
rc=$(cat "$out/rc")
if grep -E '^[[:space:]]*--- (FAIL|SKIP):' "$log"; then
	fail "failed or skipped tests above"
fi
grep -q '^CGROUP2 FAIL ' "$log" && fail "a scenario reported FAIL"
[ "$rc" = 0 ] || fail "cgroup2.test exited $rc"
grep -q '^PASS$' "$log" || fail "cgroup2.test did not end with PASS"
passed=$(grep -c '^CGROUP2 PASS ' "$log" || true)
[ "$passed" -gt 0 ] || fail "no scenario ran"
subtests=$(grep -cE '^[[:space:]]*--- PASS: TestCgroup2/[^/ ]+/[^/ ]+/[^ ]+ ' "$log" || true)
[ "$passed" = "$subtests" ] || fail "$subtests scenarios passed but $passed reported what they checked"
if [ "$full" = 1 ]; then
	for combo in "${COMBOS[@]}"; do
		grep -qE "^[[:space:]]*--- PASS: TestCgroup2/$combo " "$log" || fail "$combo did not run and pass"
	done
fi
# The shim's own cgroup v2 unit tests, which the hybrid host skips in part, must all run here.
[ -f "$out/unit-rc" ] && [ -f "$out/unit.log" ] || fail "the guest wrote no unit test results"
if grep -E '^[[:space:]]*--- (FAIL|SKIP):' "$out/unit.log"; then
	fail "cgroup v2 unit tests failed or skipped (above)"
fi
unit_rc=$(cat "$out/unit-rc")
[ "$unit_rc" = 0 ] && grep -q '^PASS$' "$out/unit.log" || fail "cgroup v2 unit tests exited $unit_rc"
grep -qE '^--- PASS: TestOOMV2Real ' "$out/unit.log" || fail "TestOOMV2Real did not run and pass"
units=$(grep -cE '^--- PASS: ' "$out/unit.log" || true)
echo "test-cgroup2: PASS: $passed scenario runs and $units cgroup v2 unit tests in the VM"
