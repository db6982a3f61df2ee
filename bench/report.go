package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

func version(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		if strings.Contains(l, "ersion") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[0])
}

func machine() string {
	kernel := version("uname", "-r")
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
	}
	cg := "cgroup v1 (hybrid)"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cg = "cgroup v2"
	}
	return fmt.Sprintf("%d CPUs, %s, kernel %s, %s", runtime.NumCPU(), mem, kernel, cg)
}

func renderReport(rows []row, sections []string, shim string, n, big int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks: containerd-shim-pod-v2 against containerd-shim-runc-v2\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`go run ./bench`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- Machine: %s\n", machine())
	fmt.Fprintf(&b, "- containerd: %s (one private daemon serves both runtimes)\n", version("/usr/bin/containerd", "--version"))
	fmt.Fprintf(&b, "- runc: %s\n", version("runc", "--version"))
	fmt.Fprintf(&b, "- ours: %s\n", version(shim, "-v"))
	fmt.Fprintf(&b, "- reference: containerd-shim-runc-v2 %s\n", version("/usr/bin/containerd-shim-runc-v2", "-v"))
	fmt.Fprintf(&b, "- Pairs: %d for latencies, %d for 1 GiB transfers, run ours then the reference each time; a ratio is the median of the per-pair ratios (memory: ratio of the values).\n\n", n, big)
	fmt.Fprintf(&b, "| measurement | ours | reference | ratio ours/ref | target | met | how |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		if r.ref == 0 {
			fmt.Fprintf(&b, "| %s | %.2f %s | | | | | %s |\n", r.name, r.ours, r.unit, r.method)
			continue
		}
		met := ""
		if r.target != "" {
			var limit float64
			atLeast := strings.HasPrefix(r.target, ">= ")
			fmt.Sscanf(strings.TrimPrefix(strings.TrimPrefix(r.target, "<= "), ">= "), "%g", &limit)
			met = "yes"
			if (!atLeast && r.ratio > limit) || (atLeast && r.ratio < limit) {
				met = "no"
			}
		}
		fmt.Fprintf(&b, "| %s | %.2f %s | %.2f %s | %.2f | %s | %s | %s |\n", r.name, r.ours, r.unit, r.ref, r.unit, r.ratio, r.target, met, r.method)
	}
	b.WriteString(whereTimeGoes)
	for _, s := range sections {
		b.WriteString(s)
	}
	return b.String()
}

const whereTimeGoes = `
## Where the time goes

- A container start is mostly runc and containerd. The "shim's own time" rows come from a second private
  containerd at debug level, where the shim logs each request's time and each runc call's time: what is left
  after runc is the shim's own work (rootfs mount, the pod's network namespace, stdio, writing the spec back,
  the cgroup OOM watch). Of that, about 1.5 ms is the first JSON decode of the spec in a new process (Go builds
  its decoders on first use) and about 2 ms the pod's network namespace, which this shim makes with a thread of
  its own where the reference shim lets runc make it. Not in those rows: the shim's own start, two short-lived
  Go processes (` + "`start`" + ` and the serving shim). runc's own time is shorter than the reference's runc's:
  the shim warms the kernel's cgroup migration lock as the create begins (see the Kubernetes pods below).
- An exec is almost all runc exec and ctr. This shim starts ` + "`runc exec`" + ` when containerd adds the exec,
  with ` + "`--process`" + ` on a pipe: runc starts up (a Go program, loading the container's state) while the
  client makes its next round trips, and waits for the spec, which Start writes into the pipe. Nothing runs
  in the container before Start. containerd starts shims with GOMAXPROCS=2, which the shim keeps: at most two
  threads run its Go code while runc needs the CPU.
- Output moves from the container's pipe to ctr's fifo with splice(2) inside the kernel: no user-space copy, and
  the copy waits on Go's poller rather than a thread per stream.
- Memory: a second after its last request the shim drops the pages of its own binary that it is not using from its
  page tables and returns freed heap to the kernel, so an idle shim holds little more than its goroutines and the
  Go runtime. The reference shim keeps what it touched. Under containerd 1.6 both shims run from a private copy of
  their binary, so that no other process on the machine shares (and divides) their file pages.
- Kubernetes pods (containerd 2.4 with CRI, both handlers under one daemon): ours is the pod's sandbox, so a pod is
  CNI, the shim's start and its own process (a few pages, no image, no runc); the reference pulls nothing but
  prepares the pause image's snapshot and runs it with runc. The "of which" rows split a pod's start by CRI call.
  What both pay and bounds the latency ratio: CNI's bridge setup (about 8-11 ms from a quiet node; each pair waits
  half a second after the last removal, as the kernel tears a removed pod's network namespace down in the background
  while holding what the next CNI setup needs), containerd's own work, and the container's runc create and start.
  On cgroup v1 and v2 alike, a process moved into a cgroup by pid (a cgroup.procs write) is moved under a lock of the
  whole kernel whose first taker after a quiet spell waits for an RCU grace period: 4-20 ms here, and a cold runc
  create takes 29-33 ms against 14-18 ms warm (measured alone). The reference pays it for the pause and again for
  the container. Ours moves nothing by pid for the pod: its process is born in the pod's cgroup (on v2 through
  CLONE_INTO_CGROUP; on v1 the starter, while it has one thread, writes "0" to each hierarchy's tasks file, a move of
  the calling thread that takes no such lock, and forks the pod's process there). And the shim takes that lock
  itself, from a goroutine and moving nothing (its own pid written to its own cgroup), when a sandbox has started,
  when a container's create begins and when an exec is added, so that the wait runs while runc starts up rather than
  when runc moves the container's (or the exec's) first process.
- Memory per pod counts each pod's shim and its own process or pause (busybox's sleep here, no registry being
  reachable; the real pause is about as small). Polled every second, a shim never idles for the trim. What it holds
  (a heap profile and runtime statistics of a polled shim): about 0.25 MB of live heap (it was 0.85 MB, two thirds
  of it tables kept for good: protobuf-go's descriptors and coders, now replaced by package wire coding plain
  structs, and encoding/json's tables of the whole OCI spec, now read in parts); the heap spans that hold it, as
  each of the allocator's size classes in use keeps at least a span; 0.5 MB of stacks (goroutines, and each
  thread's own); the rest runtime metadata. A poll makes a few kB of garbage (the metrics are written without
  allocating), so trimming after polls gives back little.

## Memory in the four situations

- At rest (the "N container(s) in one pod" rows, and the first "per pod" row): 3 s after the last request, ours
  has trimmed itself; most of what is left is anonymous memory (Go heap, stacks, runtime), where the reference's
  PSS is mostly the pages of its binary.
- Under steady polling (stats and an exec probe each second, as a node agent does) ours never stays idle for a
  second, so it never trims: it holds what a busy shim holds, still below the reference.
- Right after a burst (ten starts, or fifteen execs, back to back) the same: the trim comes a second later.
- Per pod with many pods: the pages of a binary that many shims map are divided among them, so the reference's
  binary costs each of twenty shims a twentieth of it, and what counts is each shim's anonymous memory, where ours
  is no smaller than the reference. Minutes later ours has grown: an idle Go program still wakes now and then
  (a garbage collection forced every two minutes; in ours, the 30 s timer of each start's reservation), which
  faults binary pages and heap back in, and ours trims only after requests.
- What a polled Kubernetes pod's shim holds (smaps of the 20 polled shims, containerd 2.4, measured by hand): the
  heap arena ~1.45 MB resident (live objects ~0.25 MB, free room in the spans that hold them, goroutine and thread
  stacks ~0.5-0.7 MB for ~30 goroutines and 7-9 threads); ~0.65 MB of the Go runtime's sweep bookkeeping (a 4 kB
  block per size class and sweep state that has spans, pooled, never given back: pages that hold a word or two);
  the binary's pages, ~5.7 MB touched by each shim (fault-around maps a page's neighbours too, so dropping them
  does not hold) but shared by all twenty, ~0.35 MB each. It was 3.6 MB: protobuf-go's descriptors and message
  coders (built for every message of containerd's protos at start, and per message type at first use) and
  encoding/json's tables of the whole OCI spec were 0.6 MB of 0.85 MB of live objects, spread over as many
  object sizes, each holding a span and its sweep blocks. The shim now codes containerd's messages from plain
  structs' tags (packages api and wire) and reads the spec in the parts it uses (pod.SpecDoc).
`
