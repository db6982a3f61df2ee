#!/bin/bash
# The cgroup v2 test VM's image, built once and cached: prints the directory that holds it (disk.img, vmlinuz,
# initrd.img). This file is the recipe: the cache directory is named after its sha256 (comments aside), so any
# change to it builds a new image (and the old ones are removed once the new one is ready). As root.
#
# The image: Debian bookworm (debootstrap, from the mirror this machine's apt uses: apt-mirror.sh) with
# linux-image-amd64, systemd as init, Debian's containerd 1.6 and runc 1.1.5, busybox-static (the test image's
# busybox) and dbus (runc's systemd cgroup driver talks to systemd over it). A raw ext4 disk made from that tree
# with mkfs.ext4 -d (no loop device, no mount), booted with the kernel and initrd taken out of it. At boot a unit
# mounts the host's 9p share (tag podv2) and runs its guest.sh; when that ends, for whatever reason, the VM powers
# off. Nothing else is in the image: the shim, containerd 2.4 and the test binary come in through the share.
#
# Cold: about 1.5 minutes on our machines (debootstrap ~80 s; a slow mirror can make it 6-10), ~840 MB of disk.
# Cached: well under a second.
# Environment: VM_CACHE (default /var/cache/containerd-shim-pod-v2), VM_MIRROR (default: apt-mirror.sh's answer).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VM_CACHE:-/var/cache/containerd-shim-pod-v2}
SUITE=bookworm
PACKAGES=linux-image-amd64,systemd,systemd-sysv,udev,dbus,kmod,containerd,runc,busybox-static,procps
DISK_SIZE=3G

log() { echo "vm-image: $*" >&2; }
die() {
	echo "vm-image: ERROR: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
# The recipe's key: this file without its comments and blank lines (rewording a comment builds nothing).
recipe=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$HERE/image.sh" | sha256sum | cut -c1-16)
dir=$CACHE/vm-$SUITE-$recipe
mkdir -p "$CACHE"

# mounted_under DIR: is anything mounted at or below DIR?
mounted_under() { awk -v t="$1/" 'index($5 "/", t) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# One build at a time; a second caller waits and then finds the image ready.
exec 9>"$CACHE/.vm-image.lock"
flock 9
for stale in "$CACHE"/.vm-build.*; do # left by a build that was killed
	if [ -d "$stale" ] && ! mounted_under "$stale"; then rm -rf "$stale"; fi
done
if [ -f "$dir/ready" ]; then
	log "cached: $dir"
	echo "$dir"
	exit 0
fi

for cmd in debootstrap mkfs.ext4 chroot; do
	command -v "$cmd" >/dev/null || die "$cmd not found (scripts/cgroup2-vm/deps.sh installs it)"
done
mirror=${VM_MIRROR:-$("$HERE/apt-mirror.sh" "$SUITE")} || die "no Debian mirror: set VM_MIRROR or configure apt"
# debootstrap fetches with wget: give it apt's proxy, if apt has one.
eval "$(apt-config shell http_proxy Acquire::http::Proxy 2>/dev/null || true)"
[ -n "${http_proxy:-}" ] && export http_proxy

tmp=$(mktemp -d "$CACHE/.vm-build.XXXXXX")
root=$tmp/root
cleanup() {
	# debootstrap mounts proc and sys in the target: never remove the tree while anything is mounted in it.
	local m
	for m in $(awk -v t="$tmp/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	if mounted_under "$tmp"; then
		log "mounts left under $tmp: not removing it"
		return
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

start=$(date +%s)
log "building $dir: debootstrap $SUITE from $mirror (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" --components=main "$SUITE" "$root" "$mirror" \
	>"$tmp/debootstrap.log" 2>&1 || {
	tail -n 30 "$tmp/debootstrap.log" >&2
	die "debootstrap failed (log above)"
}
log "debootstrap took $(($(date +%s) - start)) s"

echo podv2-vm >"$root/etc/hostname"
printf '/dev/vda / ext4 rw,noatime 0 0\n' >"$root/etc/fstab"
ln -sf /proc/self/mounts "$root/etc/mtab"
# The test runs private containerd daemons: Debian's own would only compete for the emulated CPUs. Timers and
# gettys have nothing to do in a VM that lives for one test run.
chroot "$root" systemctl mask --quiet containerd.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer fstrim.timer serial-getty@ttyS0.service getty@tty1.service systemd-timesyncd.service 2>/dev/null ||
	die "systemctl mask in the image failed"

cat >"$root/usr/local/sbin/podv2-vmtest" <<'GUEST'
#!/bin/sh
# Mounts the host's 9p share (tag podv2) and runs its guest.sh. The unit powers the VM off when this ends.
set -u
mkdir -p /mnt/podv2
modprobe 9pnet_virtio 2>/dev/null
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 podv2 /mnt/podv2; then
	echo "podv2-vmtest: cannot mount the 9p share podv2" >/dev/console
	exit 1
fi
if [ ! -f /mnt/podv2/guest.sh ]; then
	echo "podv2-vmtest: no guest.sh in the share" >/dev/console
	exit 1
fi
exec /bin/bash /mnt/podv2/guest.sh
GUEST
chmod 0755 "$root/usr/local/sbin/podv2-vmtest"
cat >"$root/etc/systemd/system/podv2-vmtest.service" <<'UNIT'
[Unit]
Description=containerd-shim-pod-v2 tests from the host's 9p share
After=basic.target dbus.service
Wants=dbus.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/podv2-vmtest
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable --quiet podv2-vmtest.service || die "systemctl enable in the image failed"

kernel=$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -n1)
initrd=$(ls "$root"/boot/initrd.img-* 2>/dev/null | head -n1)
[ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel or initrd in $root/boot"
cp "$kernel" "$tmp/vmlinuz"
cp "$initrd" "$tmp/initrd.img"
{
	echo "suite $SUITE, mirror $mirror, built $(date -u +%FT%TZ)"
	chroot "$root" dpkg-query -W linux-image-amd64 systemd containerd runc busybox-static
} >"$tmp/info"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

# Unmount whatever debootstrap may have left before the tree becomes a file system.
if mounted_under "$root"; then
	die "mounts left under $root after debootstrap"
fi
mkfs.ext4 -q -F -L podv2root -d "$root" "$tmp/disk.img" "$DISK_SIZE" >/dev/null || die "mkfs.ext4 -d failed"
rm -rf "$root"
echo "build took $(($(date +%s) - start)) s" >>"$tmp/info"
touch "$tmp/ready"
chmod 0755 "$tmp"
rm -f "$tmp/debootstrap.log"
mv "$tmp" "$dir"
trap - EXIT
for old in "$CACHE"/vm-*; do
	[ "$old" = "$dir" ] || [ ! -d "$old" ] || {
		log "removing the image of an older recipe: $old"
		rm -rf "$old"
	}
done
log "built $dir in $(($(date +%s) - start)) s"
echo "$dir"
