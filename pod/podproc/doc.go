// Package podproc starts the pod's own process: the process containerd's CRI
// makes every container of a sandbox join (/proc/PID/ns/{user,net,ipc,uts,pid}
// of the pid StartSandbox returns), in place of the pause container.
//
// What it must be: in the user namespace that owns the pod's network
// namespace (joined first), in that network namespace, and in new IPC, UTS
// (hostname set) and PID namespaces created inside that user namespace, so
// that containers which join the user namespace may join them too; pid 1 of
// its PID namespace, reaping the orphans reparented to it; and cheap.
//
// The catch: a process joins a user namespace with setns(2) only while it has
// one thread, and a Go process has several before main (or any init) runs.
// The ways out that were weighed:
//
//   - (a) An entry point that runs before the Go runtime. The Go linker's
//     -E flag makes a symbol of ours the ELF entry point. entry_linux_amd64.s
//     holds it: in every process of the binary it runs first, on the kernel's
//     initial stack with one thread; unless argv[0] is the Marker it jumps to
//     Go's own entry (_rt0_amd64_linux), so the shim is unchanged. Started as
//     the pod's process it does the setns, unshare, sethostname and fork with
//     raw system calls and becomes a sigtimedwait/wait4 loop: the Go runtime
//     never starts, so no thread, no heap, no garbage collector. Pure Go
//     toolchain, static, no cgo. Its price: the build must pass
//     -ldflags=-E=containerd_shim_pod_v2_entry (make build and the
//     integration harness do), and each architecture needs its entry written
//     (amd64 here; elsewhere Start refuses with ErrUnsupported). A binary
//     built without the flag runs Go's runtime when started as the pod's
//     process; this package's init catches that and reports ErrNoEntry, so a
//     sandbox fails to start with a message naming the flag, never runs
//     without its namespaces.
//   - (b) A cgo constructor, as runc's nsexec: C code run by the dynamic
//     loader before the Go runtime. It makes the shim a dynamically linked
//     cgo binary: every shim process pays the loader, libc and cgo's runtime
//     (measured on this machine: `-v` peaks at 10.6 MB resident against 6.9
//     MB static, start-up time within noise), and the pod's process, a forked
//     C program after the loader, holds about 2 MB resident, 0.4 MB PSS
//     (a minimal dynamically linked C program measured the same). The shim
//     is built CGO_ENABLED=0 for its start-up cost and PSS, so (b) undoes that.
//   - (c) util-linux's nsenter and unshare: Essential on Debian, an outside
//     dependency elsewhere, and neither reaps orphans, so a pause-like pid 1
//     would still be needed: three execs per pod and a dynamically linked
//     pid 1 (about 2 MB resident).
//
// (a) won: measured with TestPodProcessMemory, the pod's process holds 12 kB
// resident (its PSS is the same 12 kB: three pages of the binary and a stack
// page), one thread, against the pause container's process (about 0.3 MB)
// plus its runc run and image. Starting it costs one exec of the shim binary
// (already in the page cache) and a fork of a process of a few pages.
//
// It is born in the pod's cgroup, so that nothing is ever moved by pid (a
// move that takes a kernel-wide lock and waits for an RCU grace period): on
// cgroup v2 through clone3's CLONE_INTO_CGROUP, on v1 by its starter, which
// moves itself (one thread) through the tasks files before it forks.
//
// The protocol between Start and the entry point (argv, fds 3 and up, the report)
// is written at the top of entry_linux_amd64.s.
package podproc
