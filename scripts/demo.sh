#!/bin/bash
# The README's demo: a pod of two containers through containerd-shim-pod-v2, under a private containerd that this
# script starts and stops itself. As root. Nothing of the host's containerd (its config, socket, state) is touched:
# root, state, sockets and config live in a temporary directory that goes at the end, also on ^C.
#
#   scripts/demo.sh                 containerd 1.6 from Debian
#   CONTAINERD=2.4 scripts/demo.sh  containerd 2.4 (built by scripts/deps.sh)
#
# Environment: SHIM_BINARY (default bin/containerd-shim-pod-v2; `make demo` builds it), DEMO_RUNTIME (default
# io.containerd.pod.v2; io.containerd.runc.v2 runs the same demo on the reference runtime), CONTAINERD24_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONTAINERD=${CONTAINERD:-1.6}
RUNTIME=${DEMO_RUNTIME:-io.containerd.pod.v2}
SHIM_BINARY=${SHIM_BINARY:-$ROOT/bin/containerd-shim-pod-v2}
CONTAINERD24_DIR=${CONTAINERD24_DIR:-/var/cache/containerd-shim-pod-v2/containerd-v2.4.2/bin}
IMAGE=docker.io/library/podtest:latest
POD=demo

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
	echo "demo: ERROR: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it starts containerd and runc)"
case "$CONTAINERD" in
1.6 | 1.6.*) CBIN=/usr/bin CONFIG_VERSION=2 ;;
2.4 | 2.4.*) CBIN=$CONTAINERD24_DIR CONFIG_VERSION=3 ;;
*) die "CONTAINERD=$CONTAINERD: want 1.6 or 2.4" ;;
esac
for b in "$CBIN/containerd" "$CBIN/ctr" "$CBIN/containerd-shim-runc-v2" /usr/sbin/runc /bin/busybox; do
	[ -x "$b" ] || die "$b missing: run scripts/deps.sh (make deps)"
done
if [ "$RUNTIME" = io.containerd.pod.v2 ]; then
	[ -x "$SHIM_BINARY" ] || die "$SHIM_BINARY missing: run make build (make demo does)"
	GROUP_ANNOTATION=io.containerd.pod.v2.pod
	SHIM_NAME=containerd-shim-pod-v2
else
	GROUP_ANNOTATION=io.containerd.runc.v2.group
	SHIM_NAME=containerd-shim-${RUNTIME#io.containerd.}
	SHIM_NAME=${SHIM_NAME//./-}
fi

DIR=$(mktemp -d /tmp/podv2-demo-XXXXXX)
NS=podv2-demo-$$
SOCK=$DIR/containerd.sock
CONTAINERD_PID=

ctr() { "$CBIN/ctr" --address "$SOCK" --namespace "$NS" "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2); }

# Pids of processes one of whose arguments is our socket: the shims serving our containerd.
serving_pids() {
	local p
	for p in /proc/[0-9]*; do
		{ tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$SOCK" && echo "${p#/proc/}"
	done
	return 0
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "$CONTAINERD_PID" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
		bold "cleaning up"
		for id in $(ctr tasks ls -q 2>/dev/null); do
			ctr tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
			ctr tasks rm -f "$id" >/dev/null 2>&1
		done
		for id in $(ctr containers ls -q 2>/dev/null); do ctr containers rm "$id" >/dev/null 2>&1; done
		ctr images rm "$IMAGE" >/dev/null 2>&1
		kill "$CONTAINERD_PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$CONTAINERD_PID" 2>/dev/null
		wait "$CONTAINERD_PID" 2>/dev/null
		echo "containerd stopped"
	fi
	for pid in $(serving_pids); do kill -9 "$pid" 2>/dev/null && echo "killed leftover shim $pid"; done
	if [ -d "/run/containerd/runc/$NS" ]; then
		for id in $(ls "/run/containerd/runc/$NS"); do runc --root "/run/containerd/runc/$NS" delete --force "$id"; done
		rmdir "/run/containerd/runc/$NS"
	fi
	awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m"; done
	for cg in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
		[ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	# Shim sockets are named after sha256(<containerd socket>/<namespace>/<group key>) (and .../debug); ours after
	# sha256(io.containerd.pod.v2 NUL <the same>), so that it never shares one with the reference's.
	prefix=''
	[ "$RUNTIME" = io.containerd.pod.v2 ] && prefix='io.containerd.pod.v2\000'
	for key in "$POD" "$POD-a" "$POD-b" "$POD-c"; do
		for k in "$key" "$key/debug"; do
			s=/run/containerd/s/$(printf "$prefix%s" "$SOCK/$NS/$k" | sha256sum | cut -d' ' -f1)
			[ -e "$s" ] || continue
			echo "removing shim socket $s ($k) left by $RUNTIME"
			rm -f "$s" "$s.lock"
		done
	done
	[ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ] && [ -f "$DIR/containerd.log" ] && { echo "--- last lines of containerd's log:"; tail -n 30 "$DIR/containerd.log"; }
	rm -rf "$DIR"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bold "a private containerd $CONTAINERD in $DIR"
mkdir -p "$DIR/bin" "$DIR/root" "$DIR/state"
[ "$RUNTIME" = io.containerd.pod.v2 ] && ln -s "$SHIM_BINARY" "$DIR/bin/containerd-shim-pod-v2"
if [ "$CONFIG_VERSION" = 2 ]; then
	DISABLED='"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs"'
	RUNTIMES='[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pod]'
else
	DISABLED='"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs"'
	RUNTIMES='[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod]'
fi
cat >"$DIR/config.toml" <<EOF
version = $CONFIG_VERSION
root = "$DIR/root"
state = "$DIR/state"
imports = []
disabled_plugins = [$DISABLED, "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""

# The runtime as the README registers it (used by CRI, which this demo does not start; ctr finds it by name).
$RUNTIMES
  runtime_type = "io.containerd.pod.v2"
EOF
# Our shim first in PATH: containerd resolves io.containerd.pod.v2 to containerd-shim-pod-v2 there.
PATH="$DIR/bin:$CBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	setsid "$CBIN/containerd" --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 &
CONTAINERD_PID=$!
for _ in $(seq 200); do
	[ -S "$SOCK" ] && ctr version >/dev/null 2>&1 && break
	kill -0 "$CONTAINERD_PID" 2>/dev/null || die "containerd exited"
	sleep 0.05
done
ctr version >/dev/null || die "containerd did not come up"
echo "containerd pid $CONTAINERD_PID, socket $SOCK, namespace $NS"

bold "the busybox image (built from /bin/busybox by integration/cmd/mkimage)"
(cd "$ROOT/integration" && go run ./cmd/mkimage -o "$DIR/podtest.tar")
ctr images import "$DIR/podtest.tar" >/dev/null
ctr images ls

bold "a pod '$POD' of two containers, runtime $RUNTIME"
for c in a b; do
	echo "+ ctr run -d --runtime $RUNTIME --annotation $GROUP_ANNOTATION=$POD --log-uri file://$DIR/$c.log $IMAGE $POD-$c ..."
	ctr run -d --runtime "$RUNTIME" --annotation "$GROUP_ANNOTATION=$POD" --log-uri "file://$DIR/$c.log" "$IMAGE" "$POD-$c" \
		sh -c "echo \"hello from container $c: pid \$\$, net namespace \$(readlink /proc/self/ns/net)\"; exec sleep 1000"
done
for _ in $(seq 100); do
	[ -s "$DIR/a.log" ] && [ -s "$DIR/b.log" ] && break
	sleep 0.1
done
ctr tasks ls
echo
for c in a b; do echo "output of $POD-$c: $(cat "$DIR/$c.log")"; done
neta=$(sed -n 's/.*net namespace //p' "$DIR/a.log")
netb=$(sed -n 's/.*net namespace //p' "$DIR/b.log")
if [ -n "$neta" ] && [ "$neta" = "$netb" ]; then
	echo "both containers are in one network namespace: $neta"
else
	echo "network namespaces: a $neta, b $netb"
fi

bold "one shim process serves the pod"
mapfile -t shims < <(serving_pids)
for pid in "${shims[@]}"; do echo "  pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"; done
[ "${#shims[@]}" = 1 ] || die "expected one $SHIM_NAME process for the pod, found ${#shims[@]}"
echo "the containers' parent: $(ps -o ppid= -p "$(ctr tasks ls | awk -v id="$POD-a" '$1 == id { print $2 }')" | tr -d ' ') (the shim is ${shims[0]})"

bold "a third container of the pod, in the foreground"
echo "+ ctr run --rm --runtime $RUNTIME --annotation $GROUP_ANNOTATION=$POD $IMAGE $POD-c sh -c 'echo hi; exit 3'"
set +e
ctr run --rm --runtime "$RUNTIME" --annotation "$GROUP_ANNOTATION=$POD" "$IMAGE" "$POD-c" sh -c 'echo hi; exit 3'
rc=$?
set -e
echo "exit status: $rc"
[ $rc = 3 ] || die "expected exit status 3"
mapfile -t now < <(serving_pids)
[ "${now[*]}" = "${shims[*]}" ] || die "the pod's shim changed: ${shims[*]} -> ${now[*]}"
echo "still one shim: ${now[*]}"

bold "stopping the pod"
for c in a b; do
	ctr tasks kill -s SIGKILL "$POD-$c"
done
for c in a b; do
	for _ in $(seq 100); do
		[ "$(ctr tasks ls | awk -v id="$POD-$c" '$1 == id { print $3 }')" = STOPPED ] && break
		sleep 0.1
	done
	ctr tasks rm "$POD-$c" 2>&1 | sed 's/^/  /' || true
	ctr containers rm "$POD-$c"
done
for _ in $(seq 100); do
	[ -z "$(serving_pids)" ] && break
	sleep 0.1
done
[ -z "$(serving_pids)" ] || die "the shim did not exit after its last container: $(serving_pids)"
echo "containers removed; the shim exited"
ctr tasks ls
echo
echo "demo: ok"
