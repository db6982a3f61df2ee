#!/bin/bash
# make test-cgroup2: the shim on a real cgroup v2 kernel. Boots a VM (qemu, software emulation) of Debian bookworm
# with cgroup2 only and systemd as init, and runs integration/cgroup2's scenarios in it under containerd 1.6
# (Debian's, in the image) and 2.4 (built on this host by scripts/deps.sh), each with runc's cgroupfs and systemd
# drivers. As root.
#
#   1. deps.sh: qemu-system-x86, debootstrap, e2fsprogs (apt-get, when missing)
#   2. image.sh: the VM image, built once and cached under /var/cache/containerd-shim-pod-v2/vm-bookworm-<recipe>
#   3. a 9p share with the shim ($SHIM_BINARY, from make build), the test binaries (go test -c, static: the
#      scenarios, with -tags cgroup2vm, and the unit tests of the shim's cgroup package), containerd 2.4's binaries
#      and guest.sh
#   4. qemu, whose serial console is shown here as it comes (vm| ...); the guest runs guest.sh and powers off. A
#      guest still running after VM_TIMEOUT seconds is killed and the run fails.
#   5. verdict.sh judges what the guest wrote to the share.
#
# Environment: SHIM_BINARY (default bin/containerd-shim-pod-v2), CONTAINERD24_DIR, GO, VM_TIMEOUT (seconds, default
# 900, about four times a full run on a busy machine), VM_MEMORY (MiB, default 2048), VM_CPUS (default: this
# host's), CGROUP2_RUN (go test -run pattern inside the VM, e.g. 'TestCgroup2/containerd-2.4/systemd/oom'),
# CGROUP2_COUNT (go test -count, to repeat), TEST_CONTAINERD (1.6 or 2.4), TEST_RUNTIME (as for the integration
# suite), TEST_LOG_DIR (where a failed run's logs are kept, default /tmp/podv2-integration-logs), VM_MIRROR.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GO=${GO:-go}
SHIM_BINARY=${SHIM_BINARY:-$ROOT/bin/containerd-shim-pod-v2}
CONTAINERD24_DIR=${CONTAINERD24_DIR:-/var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin}
VM_TIMEOUT=${VM_TIMEOUT:-900}
VM_MEMORY=${VM_MEMORY:-2048}
VM_CPUS=${VM_CPUS:-$(nproc)}
# The guest's go test timeout leaves the boot and the power-off inside VM_TIMEOUT (half of it, if that is short).
GUEST_TIMEOUT=$((VM_TIMEOUT > 360 ? VM_TIMEOUT - 180 : VM_TIMEOUT / 2))s

log() { echo "test-cgroup2: $*"; }
die() {
	echo "test-cgroup2: ERROR: $*" >&2
	exit 1
}
elapsed() { echo "$(($(date +%s) - $1)) s"; }

[ "$(id -u)" = 0 ] || die "must run as root (the image build needs debootstrap and chroot)"
[ -x "$SHIM_BINARY" ] || die "$SHIM_BINARY missing: run make build"
for b in containerd ctr containerd-shim-runc-v2; do
	[ -x "$CONTAINERD24_DIR/$b" ] || die "$CONTAINERD24_DIR/$b missing: run scripts/deps.sh (make deps)"
done
"$HERE/deps.sh"

start=$(date +%s)
image=$("$HERE/image.sh")
log "image $image ($(elapsed "$start")): $(tr '\t\n' '= ' <"$image/info")"

work=$(mktemp -d /tmp/podv2-vm.XXXXXX)
qemu_pid=
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -KILL "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

share=$work/share
mkdir -p "$share/bin/containerd24" "$share/out"
t=$(date +%s)
cp "$SHIM_BINARY" "$share/bin/containerd-shim-pod-v2"
(cd "$ROOT/integration" && CGO_ENABLED=0 "$GO" test -c -tags cgroup2vm -o "$share/bin/cgroup2.test" ./cgroup2) ||
	die "building the test binary (integration/cgroup2) failed"
# The shim's own cgroup v2 unit tests, which a hybrid host skips in part (no memory controller in its cgroup2):
# the package that holds TestOOMV2Real.
unit_pkg=$(cd "$ROOT" && grep -l '^func TestOOMV2Real(' -- */*_test.go 2>/dev/null | head -n1 | xargs -r dirname)
[ -n "$unit_pkg" ] || die "no package of the shim has TestOOMV2Real: where did the cgroup v2 unit tests go?"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" test -c -o "$share/bin/cgroup-unit.test" "./$unit_pkg") ||
	die "building the unit tests of ./$unit_pkg failed"
for b in containerd ctr containerd-shim-runc-v2; do cp "$CONTAINERD24_DIR/$b" "$share/bin/containerd24/"; done
cp "$HERE/guest.sh" "$share/guest.sh"
{
	printf 'CGROUP2_RUN=%q\n' "${CGROUP2_RUN:-}"
	printf 'CGROUP2_COUNT=%q\n' "${CGROUP2_COUNT:-1}"
	printf 'CGROUP2_TIMEOUT=%q\n' "$GUEST_TIMEOUT"
	printf 'TEST_CONTAINERD=%q\n' "${TEST_CONTAINERD:-}"
	printf 'TEST_RUNTIME=%q\n' "${TEST_RUNTIME:-}"
} >"$share/guest.env"
log "test binary and share ready ($(elapsed "$t"))"

console=$work/console.log
: >"$console"
log "booting the VM: ${VM_CPUS} CPUs (TCG, no KVM), ${VM_MEMORY} MiB, timeout ${VM_TIMEOUT} s"
t=$(date +%s)
qemu-system-x86_64 -name podv2-cgroup2 -machine pc -accel tcg,thread=multi -cpu max \
	-smp "$VM_CPUS" -m "$VM_MEMORY" \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 panic=-1 quiet" \
	-drive "file=$image/disk.img,format=raw,if=virtio,snapshot=on" \
	-virtfs "local,path=$share,mount_tag=podv2,security_model=none,id=podv2" \
	-nic none -display none -monitor none -serial "file:$console" -no-reboot \
	</dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
tail -n +1 -F --pid="$qemu_pid" "$console" 2>/dev/null | sed -u 's/\r$//; s/^/vm| /' &
tail_pid=$!

timed_out=0
deadline=$(($(date +%s) + VM_TIMEOUT))
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		timed_out=1
		kill -KILL "$qemu_pid" 2>/dev/null || true
		break
	fi
	sleep 1
done
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=
wait "$tail_pid" 2>/dev/null || true
vm_time=$(elapsed "$t")
[ -s "$work/qemu.out" ] && sed 's/^/qemu: /' "$work/qemu.out"

keep_logs() {
	local dir=${TEST_LOG_DIR:-/tmp/podv2-integration-logs}/cgroup2-vm
	mkdir -p "$dir"
	cp -r "$share/out/." "$dir/" 2>/dev/null || true
	cp "$console" "$dir/console.log"
	echo "test-cgroup2: logs kept in $dir"
}
if [ "$timed_out" = 1 ]; then
	keep_logs
	die "the VM did not power off within ${VM_TIMEOUT} s: killed it (hung guest; see the console above)"
fi
log "the VM powered off after $vm_time (qemu exit status $qemu_rc); total $(elapsed "$start")"
full=0 # every flavour and driver, once
[ -z "${CGROUP2_RUN:-}${TEST_CONTAINERD:-}" ] && [ "${CGROUP2_COUNT:-1}" = 1 ] && full=1
if ! "$HERE/verdict.sh" "$share/out" "$full"; then
	keep_logs
	exit 1
fi
