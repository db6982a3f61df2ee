// The pod's own process, before the Go runtime (see doc.go). The linker makes
// containerd_shim_pod_v2_entry the binary's entry point
// (-ldflags=-E=containerd_shim_pod_v2_entry): it runs first in every process
// of the binary, with one thread and nothing initialised, and jumps to Go's
// own entry unless it was started as the pod's process (the starter):
//
//	argv = {"containerd-shim-pod-v2:pod", FLAGS, HOSTNAME, FILE, VALUE, ...}
//	fd 3 = the write end of the report pipe
//	fd 4 = the user namespace to join (FLAGS[0] == '1')
//	fd 5 = the network namespace to join (FLAGS[1] == '1')
//	FLAGS[2..4] == '1': new IPC, UTS (HOSTNAME set if not empty), PID namespaces
//	FLAGS[5] == '0'+N: fds 6 to 5+N are cgroup v1 tasks files, open for writing
//	FILE, VALUE pairs: sysctls, a /proc/sys file and what to write to it
//
// The starter first moves itself into the pod's cgroup: "0" written to each
// tasks file moves the calling thread, and it is the process's only one. A
// thread that moves itself takes no cgroup-wide lock, where a process moved
// by pid (cgroup.procs) waits for an RCU grace period (4-20 ms) unless
// another move came just before; its fork is born in the cgroup. It joins
// the user namespace next (a multithreaded process cannot) and becomes root there, then joins the network namespace, unshares the new namespaces inside
// that user namespace, sets the hostname, writes the sysctls (as root of the
// pod's user namespace, the only one who may write those of its IPC
// namespace), and forks the pod's process with CLONE_PARENT, so that the
// shim is its parent. It reports {0, pid} on fd 3 and exits 0, or {step,
// errno} and exits 100+step (a sysctl's step is STEP_SYSCTL+2k for the k-th
// pair). The pod's process closes every fd above 2 and waits for signals for
// ever: SIGCHLD reaps every exited child (it is pid 1 of the new PID
// namespace, the reaper of its orphans), SIGTERM and SIGINT end it (exit 0).
// It never starts the Go runtime: no threads, no heap, a few pages.

#include "textflag.h"

#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_rt_sigprocmask 14
#define SYS_clone 56
#define SYS_wait4 61
#define SYS_setgroups 116
#define SYS_setresuid 117
#define SYS_setresgid 119
#define SYS_rt_sigtimedwait 128
#define SYS_sethostname 170
#define SYS_exit_group 231
#define SYS_unshare 272
#define SYS_setns 308
#define SYS_close_range 436

#define CLONE_NEWUTS 0x04000000
#define CLONE_NEWIPC 0x08000000
#define CLONE_NEWUSER 0x10000000
#define CLONE_NEWPID 0x20000000
#define CLONE_NEWNET 0x40000000
#define CLONE_PARENT 0x00008000

#define O_WRONLY 1
#define O_CLOEXEC 0x80000

#define SIGINT 2
#define SIGTERM 15
#define SIGCHLD 17
// SIGCHLD, SIGTERM and SIGINT as a sigset_t: bit signo-1.
#define WAITSET 0x14002

// Report steps (podproc.go decodes them).
#define STEP_ARGS 1
#define STEP_SETNS_USER 2
#define STEP_SETNS_NET 3
#define STEP_UNSHARE 4
#define STEP_HOSTNAME 5
#define STEP_SIGMASK 6
#define STEP_FORK 7
#define STEP_SETID 8
#define STEP_CGROUP 9
// STEP_SYSCTL+k: the k-th sysctl pair (k from 0).
#define STEP_SYSCTL 1000

DATA marker<>+0(SB)/8, $"containe"
DATA marker<>+8(SB)/8, $"rd-shim-"
DATA marker<>+16(SB)/8, $"pod-v2:p"
DATA marker<>+24(SB)/2, $"od"
GLOBL marker<>(SB), RODATA, $32

// What a thread writes to a tasks file to move itself.
DATA zero<>+0(SB)/1, $"0"
GLOBL zero<>(SB), RODATA, $1

TEXT containerd_shim_pod_v2_entry(SB), NOSPLIT|NOFRAME, $0
	// The kernel's initial stack: 0(SP) argc, 8(SP) argv[0], ...
	MOVQ 0(SP), AX
	CMPQ AX, $3
	JLT  gort
	TESTQ $1, AX
	JEQ  gort
	MOVQ 8(SP), SI
	LEAQ marker<>(SB), DI

cmp:
	MOVBLZX (SI), AX
	MOVBLZX (DI), BX
	CMPL    AX, BX
	JNE     gort
	TESTL   AX, AX
	JEQ     pod
	INCQ    SI
	INCQ    DI
	JMP     cmp

gort:
	// Not the pod's process: Go starts as it always does.
	JMP _rt0_amd64_linux(SB)

pod:
	MOVQ 16(SP), R12 // FLAGS
	MOVQ 24(SP), R13 // HOSTNAME
	SUBQ $64, SP     // 0(SP): the report; 16(SP): the signal set

	// FLAGS is exactly six characters, the last a digit.
	MOVQ $STEP_ARGS, R14
	MOVQ $-22, AX        // EINVAL
	MOVQ $0, CX

flagslen:
	MOVBLZX (R12)(CX*1), BX
	TESTL   BX, BX
	JEQ     fail
	INCQ    CX
	CMPQ    CX, $6
	JNE     flagslen
	MOVBLZX 6(R12), BX
	TESTL   BX, BX
	JNE     fail
	MOVBLZX 5(R12), R15
	SUBQ    $'0', R15
	CMPQ    R15, $9
	JHI     fail         // not a digit (unsigned: below '0' too)

	// Into the pod's cgroup: "0" to each tasks file, fds 6 to 5+N.
	MOVQ $STEP_CGROUP, R14
	MOVQ $6, BX

cgjoin:
	TESTQ R15, R15
	JEQ   joinuser
	MOVQ  BX, DI
	LEAQ  zero<>(SB), SI
	MOVQ  $1, DX
	MOVQ  $SYS_write, AX
	SYSCALL
	TESTQ AX, AX
	JMI   fail
	MOVQ  BX, DI
	MOVQ  $SYS_close, AX
	SYSCALL
	INCQ  BX
	DECQ  R15
	JMP   cgjoin

joinuser:

	// The user namespace first: the others are joined or made inside it.
	CMPB 0(R12), $'1'
	JNE  joinnet
	MOVQ $STEP_SETNS_USER, R14
	MOVQ $4, DI
	MOVQ $CLONE_NEWUSER, SI
	MOVQ $SYS_setns, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail
	// Root of the pod's user namespace, as runc makes a container's init:
	// setns keeps the host's ids, unmapped there. Supplementary groups go
	// where the user namespace allows setgroups.
	MOVQ $0, DI
	MOVQ $0, SI
	MOVQ $SYS_setgroups, AX
	SYSCALL
	MOVQ $STEP_SETID, R14
	MOVQ $0, DI
	MOVQ $0, SI
	MOVQ $0, DX
	MOVQ $SYS_setresgid, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail
	MOVQ $0, DI
	MOVQ $0, SI
	MOVQ $0, DX
	MOVQ $SYS_setresuid, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail

joinnet:
	CMPB 1(R12), $'1'
	JNE  unshare
	MOVQ $STEP_SETNS_NET, R14
	MOVQ $5, DI
	MOVQ $CLONE_NEWNET, SI
	MOVQ $SYS_setns, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail

unshare:
	XORQ DI, DI
	CMPB 2(R12), $'1'
	JNE  nouts
	ORQ  $CLONE_NEWIPC, DI

nouts:
	CMPB 3(R12), $'1'
	JNE  nopid
	ORQ  $CLONE_NEWUTS, DI

nopid:
	CMPB 4(R12), $'1'
	JNE  dounshare
	ORQ  $CLONE_NEWPID, DI

dounshare:
	TESTQ DI, DI
	JEQ   sysctls
	MOVQ  $STEP_UNSHARE, R14
	MOVQ  $SYS_unshare, AX
	SYSCALL
	TESTQ AX, AX
	JMI   fail

	// The hostname, in the new UTS namespace only.
	CMPB 3(R12), $'1'
	JNE  sysctls
	MOVQ $0, SI

hostlen:
	MOVBLZX (R13)(SI*1), BX
	TESTL   BX, BX
	JEQ     sethost
	INCQ    SI
	JMP     hostlen

sethost:
	TESTQ SI, SI
	JEQ   sysctls
	MOVQ  $STEP_HOSTNAME, R14
	MOVQ  R13, DI
	MOVQ  $SYS_sethostname, AX
	SYSCALL
	TESTQ AX, AX
	JMI   fail

sysctls:
	// argv[3], argv[4], ...: pairs of a /proc/sys file and the value to
	// write to it, in the namespaces just joined or made. R15 indexes argv.
	MOVQ $3, R15

sysctl:
	MOVQ 64(SP), AX      // argc (the initial stack is 64 bytes up)
	CMPQ R15, AX
	JGE  sigmask
	MOVQ R15, R14
	ADDQ $(STEP_SYSCTL-3), R14 // the report names the pair by its argv index
	MOVQ 72(SP)(R15*8), DI // the file
	MOVQ $(O_WRONLY|O_CLOEXEC), SI
	MOVQ $0, DX
	MOVQ $SYS_open, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail
	MOVQ AX, BX          // the fd
	MOVQ 80(SP)(R15*8), SI // the value
	MOVQ $0, DX

valuelen:
	MOVBLZX (SI)(DX*1), CX
	TESTL   CX, CX
	JEQ     writevalue
	INCQ    DX
	JMP     valuelen

writevalue:
	MOVQ BX, DI
	MOVQ $SYS_write, AX
	SYSCALL
	MOVQ AX, R8          // the write's result, kept across close
	MOVQ BX, DI
	MOVQ $SYS_close, AX
	SYSCALL
	MOVQ R8, AX
	TESTQ AX, AX
	JMI  fail
	ADDQ $2, R15
	JMP  sysctl

sigmask:
	// Blocked before the fork, so that the pod's process never misses one:
	// it takes them with rt_sigtimedwait.
	MOVQ $STEP_SIGMASK, R14
	MOVQ $WAITSET, AX
	MOVQ AX, 16(SP)
	MOVQ $0, DI          // SIG_BLOCK
	LEAQ 16(SP), SI
	MOVQ $0, DX
	MOVQ $8, R10
	MOVQ $SYS_rt_sigprocmask, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail

	// The pod's process: a child of the shim (CLONE_PARENT), pid 1 of the
	// new PID namespace if there is one. No new stack: a fork.
	MOVQ $STEP_FORK, R14
	MOVQ $(CLONE_PARENT|SIGCHLD), DI
	MOVQ $0, SI
	MOVQ $0, DX
	MOVQ $0, R10
	MOVQ $0, R8
	MOVQ $SYS_clone, AX
	SYSCALL
	TESTQ AX, AX
	JMI  fail
	JEQ  podproc

	// The starter: report the pid and go.
	MOVL $0, 0(SP)
	MOVL AX, 4(SP)
	MOVQ $3, DI
	LEAQ 0(SP), SI
	MOVQ $8, DX
	MOVQ $SYS_write, AX
	SYSCALL
	MOVQ $0, DI
	MOVQ $SYS_exit_group, AX
	SYSCALL

fail:
	// AX holds -errno, R14 the step.
	NEGQ AX
	MOVL R14, 0(SP)
	MOVL AX, 4(SP)
	MOVQ $3, DI
	LEAQ 0(SP), SI
	MOVQ $8, DX
	MOVQ $SYS_write, AX
	SYSCALL
	MOVQ R14, DI
	ADDQ $100, DI
	MOVQ $SYS_exit_group, AX
	SYSCALL

podproc:
	// The pod's process keeps no file of the shim's, nor any the shim
	// inherited: close_range(3, ~0, 0) (Linux 5.9), else fds 3-5.
	MOVQ $3, DI
	MOVQ $0xffffffff, SI
	MOVQ $0, DX
	MOVQ $SYS_close_range, AX
	SYSCALL
	TESTQ AX, AX
	JEQ  wait
	MOVQ $3, DI
	MOVQ $SYS_close, AX
	SYSCALL
	MOVQ $4, DI
	MOVQ $SYS_close, AX
	SYSCALL
	MOVQ $5, DI
	MOVQ $SYS_close, AX
	SYSCALL

wait:
	LEAQ 16(SP), DI
	MOVQ $0, SI
	MOVQ $0, DX
	MOVQ $8, R10
	MOVQ $SYS_rt_sigtimedwait, AX
	SYSCALL
	CMPQ AX, $SIGCHLD
	JEQ  reap
	CMPQ AX, $SIGTERM
	JEQ  down
	CMPQ AX, $SIGINT
	JEQ  down
	JMP  wait

reap:
	MOVQ $-1, DI
	MOVQ $0, SI
	MOVQ $1, DX          // WNOHANG
	MOVQ $0, R10
	MOVQ $SYS_wait4, AX
	SYSCALL
	TESTQ AX, AX
	JGT  reap
	JMP  wait

down:
	MOVQ $0, DI
	MOVQ $SYS_exit_group, AX
	SYSCALL
	JMP  down
