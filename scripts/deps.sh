#!/bin/bash
# Installs what the build, the integration suite and the demo need, as root on Debian 12. Idempotent: a second run
# changes nothing and takes about a second.
#
#  - Debian packages (apt-get; `apt-get update` only when something is missing): runc, containerd 1.6 (with ctr and
#    containerd-shim-runc-v2), busybox-static, criu, uidmap, iproute2, util-linux, mount, procps, libseccomp-dev,
#    containernetworking-plugins (the CNI plugins of the CRI tests, in /usr/lib/cni).
#  - containerd v2.4.2, its ctr and its containerd-shim-runc-v2 (the reference shim that speaks 2.4's bootstrap
#    protocol; Debian's 1.6 shim cannot start under 2.4), built with `go install` from the Go module proxy into
#    $CONTAINERD24_DIR (default /var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin) when absent. The build
#    goes to a temporary directory first and each binary is moved into place only once built, so an interrupted
#    build never leaves a half-filled cache.
#  - crictl of cri-tools $CRICTL_VERSION (default v1.36.0) for the CRI tests: `go mod download` of
#    sigs.k8s.io/cri-tools from the Go module proxy, then `go build ./cmd/crictl` in the module's directory, into
#    $CRICTL_DIR (default /var/cache/containerd-shim-pod-v2/cri-tools-v1.36.0/bin) when absent (about a minute).
#  - runc $RUNC_VERSION (default v1.4.3) for the tests of id-mapped mounts made by the runtime (Debian's runc 1.1.5
#    has none): `go install -tags seccomp github.com/opencontainers/runc@$RUNC_VERSION` (cgo, libseccomp-dev) into
#    $RUNC_DIR (default /var/cache/containerd-shim-pod-v2/runc-v1.4.3/bin) when absent (about half a minute). It is
#    only ever named by those tests (BinaryName); runc on $PATH stays Debian's.
#
# Usage: scripts/deps.sh [test|demo]. `test` (the default; make test) installs all of the above. `demo` (make demo)
# installs only what the demo runs: Debian's containerd 1.6, runc and busybox, and containerd 2.4 only when
# CONTAINERD=2.4 asks for it, so that a new machine runs the demo within a couple of minutes.
#
# Environment: CONTAINERD24_VERSION (default v2.4.2), CONTAINERD24_DIR, CRICTL_VERSION, CRICTL_DIR, RUNC_VERSION,
# RUNC_DIR, DEPS_SKIP_APT=1
# (check only, install nothing with apt), CONTAINERD (demo: 1.6 or 2.4).
set -euo pipefail

PROFILE=${1:-test}
case "$PROFILE" in
test | demo) ;;
*)
	echo "deps: usage: $0 [test|demo]" >&2
	exit 2
	;;
esac

CONTAINERD24_VERSION=${CONTAINERD24_VERSION:-v2.4.2}
CACHE=/var/cache/containerd-shim-pod-v2
CONTAINERD24_DIR=${CONTAINERD24_DIR:-$CACHE/containerd-${CONTAINERD24_VERSION}/bin}
CRICTL_VERSION=${CRICTL_VERSION:-v1.36.0}
CRICTL_DIR=${CRICTL_DIR:-$CACHE/cri-tools-${CRICTL_VERSION}/bin}
RUNC_VERSION=${RUNC_VERSION:-v1.4.3}
RUNC_DIR=${RUNC_DIR:-$CACHE/runc-${RUNC_VERSION}/bin}
PACKAGES=(runc containerd busybox-static criu uidmap iproute2 util-linux mount procps libseccomp-dev ca-certificates
	containernetworking-plugins)
if [ "$PROFILE" = demo ]; then
	PACKAGES=(runc containerd busybox-static uidmap iproute2 util-linux mount procps ca-certificates)
fi

log() { echo "deps: $*" >&2; }
die() {
	echo "deps: ERROR: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (the suite starts containerd and runc)"
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian (12) only"

# --- Debian packages ----------------------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "${DEPS_SKIP_APT:-}" = 1 ] && die "missing Debian packages: ${missing[*]} (DEPS_SKIP_APT=1 is set)"
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
else
	log "Debian packages present: ${PACKAGES[*]}"
fi

# The Debian containerd package enables and starts the host's containerd. We never use it (the suite and the demo
# run private daemons) and we leave it as it is.
for b in /usr/sbin/runc /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /bin/busybox; do
	[ -x "$b" ] || die "$b missing after installing packages"
done
if [ "$PROFILE" = test ]; then
	for b in /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
		[ -x "$b" ] || die "$b missing after installing containernetworking-plugins"
	done
fi
if LC_ALL=C grep -aq 'ld-linux' <(head -c 4096 /bin/busybox); then
	die "/bin/busybox is dynamically linked: install busybox-static (it replaces busybox)"
fi

# --- Go -----------------------------------------------------------------------------------------------------------
command -v go >/dev/null || die "go not found on PATH: install Go >= 1.26.6 (https://go.dev/dl/) first"
log "$(go version)"

# --- containerd 2.4 -----------------------------------------------------------------------------------------------
if [ "$PROFILE" = demo ] && [ "${CONTAINERD:-1.6}" != 2.4 ]; then
	log "ok (demo: containerd 2.4 not needed)"
	exit 0
fi
want=${CONTAINERD24_VERSION#v}
have_ok() { # binary version-flag
	[ -x "$CONTAINERD24_DIR/$1" ] || return 1
	local out
	out=$("$CONTAINERD24_DIR/$1" "$2" 2>/dev/null) || return 1
	[[ "$out" == *" $want"* ]]
}
need=()
have_ok containerd --version || need+=(containerd)
have_ok ctr --version || need+=(ctr)
have_ok containerd-shim-runc-v2 -v || need+=(containerd-shim-runc-v2)
# containerd-shim-runc-v2 -v prints "Version:  2.4.2+unknown": have_ok's " $want" matches it too.

if [ ${#need[@]} -gt 0 ]; then
	log "building containerd ${CONTAINERD24_VERSION} (${need[*]}) into $CONTAINERD24_DIR (3-5 minutes the first time)"
	mkdir -p "$CACHE" "$CONTAINERD24_DIR"
	tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	pkgs=()
	for b in "${need[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b@${CONTAINERD24_VERSION}"); done
	start=$(date +%s)
	# -tags no_btrfs: no btrfs headers needed. cwd /: never pick up a go.mod or go.work.
	(cd / && GOBIN="$tmp" GOFLAGS=-buildvcs=false go install -tags no_btrfs "${pkgs[@]}") ||
		die "go install of containerd ${CONTAINERD24_VERSION} failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
	for b in "${need[@]}"; do
		[ -x "$tmp/$b" ] || die "go install produced no $b"
		mv -f "$tmp/$b" "$CONTAINERD24_DIR/$b"
	done
	log "built ${need[*]} in $(($(date +%s) - start)) s"
fi
for b in containerd ctr; do have_ok $b --version || die "$CONTAINERD24_DIR/$b is not version $want"; done
have_ok containerd-shim-runc-v2 -v || die "$CONTAINERD24_DIR/containerd-shim-runc-v2 is not version $want"
log "containerd ${CONTAINERD24_VERSION}: $CONTAINERD24_DIR/{containerd,ctr,containerd-shim-runc-v2}"

# --- crictl (the CRI tests; not for the demo) ----------------------------------------------------------------------
if [ "$PROFILE" = test ]; then
	crictl_want="crictl version ${CRICTL_VERSION#v}"
	crictl_ok() { [ -x "$CRICTL_DIR/crictl" ] && [ "$("$CRICTL_DIR/crictl" --version 2>/dev/null)" = "$crictl_want" ]; }
	if ! crictl_ok; then
		log "building crictl ${CRICTL_VERSION} into $CRICTL_DIR (about a minute the first time)"
		mkdir -p "$CACHE" "$CRICTL_DIR"
		ctmp=$(mktemp -d "$CACHE/.build-crictl.XXXXXX")
		trap 'rm -rf "${tmp:-}" "$ctmp"' EXIT
		moddir=$(cd / && go mod download -json "sigs.k8s.io/cri-tools@${CRICTL_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -n "$moddir" ] && [ -d "$moddir" ] ||
			die "go mod download sigs.k8s.io/cri-tools@${CRICTL_VERSION} failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
		(cd "$moddir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
			-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" -o "$ctmp/crictl" ./cmd/crictl) ||
			die "go build ./cmd/crictl of cri-tools ${CRICTL_VERSION} failed"
		mv -f "$ctmp/crictl" "$CRICTL_DIR/crictl"
	fi
	crictl_ok || die "$CRICTL_DIR/crictl is not \"$crictl_want\""
	log "crictl ${CRICTL_VERSION}: $CRICTL_DIR/crictl"
fi

# --- runc 1.4 (the tests of runtime-made id-mapped mounts; not for the demo) -----------------------------------------
if [ "$PROFILE" = test ]; then
	runc_want="runc version ${RUNC_VERSION#v}"
	runc_ok() { [ -x "$RUNC_DIR/runc" ] && "$RUNC_DIR/runc" --version 2>/dev/null | head -1 | grep -qx "$runc_want"; }
	if ! runc_ok; then
		log "building runc ${RUNC_VERSION} into $RUNC_DIR (about half a minute the first time)"
		mkdir -p "$CACHE" "$RUNC_DIR"
		rtmp=$(mktemp -d "$CACHE/.build-runc.XXXXXX")
		trap 'rm -rf "${tmp:-}" "${ctmp:-}" "$rtmp"' EXIT
		# cgo for libseccomp (the seccomp tag); cwd /: never pick up a go.mod or go.work.
		(cd / && GOBIN="$rtmp" CGO_ENABLED=1 GOFLAGS=-buildvcs=false go install -tags seccomp \
			"github.com/opencontainers/runc@${RUNC_VERSION}") ||
			die "go install of runc ${RUNC_VERSION} failed (libseccomp-dev installed? Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
		mv -f "$rtmp/runc" "$RUNC_DIR/runc"
	fi
	runc_ok || die "$RUNC_DIR/runc is not \"$runc_want\": $("$RUNC_DIR/runc" --version 2>&1 | head -1)"
	# Runtimes are run from user namespaces too: the path must be searchable by all.
	chmod 0755 "$CACHE" "$(dirname "$RUNC_DIR")" "$RUNC_DIR"
	log "runc ${RUNC_VERSION}: $RUNC_DIR/runc"
fi

# --- kernel features the suite relies on ----------------------------------------------------------------------------
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (needed by the overlayfs snapshotter)"
log "ok"
