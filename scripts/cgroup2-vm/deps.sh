#!/bin/bash
# Installs what the cgroup v2 VM test needs on the host (Debian 12, as root), with apt-get: qemu-system-x86 (the VM,
# software emulation), debootstrap (its image), e2fsprogs (mkfs.ext4 -d). Idempotent; fails loudly when it cannot
# install: the VM test is never skipped for a missing tool.
set -euo pipefail

PACKAGES=(qemu-system-x86 debootstrap e2fsprogs)

die() {
	echo "vm-deps: ERROR: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root"
missing=()
for p in "${PACKAGES[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "vm-deps: installing Debian packages: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
for b in qemu-system-x86_64 debootstrap mkfs.ext4; do
	command -v "$b" >/dev/null || die "$b missing after installing ${PACKAGES[*]}"
done
