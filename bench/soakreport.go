package main

import (
	"fmt"
	"strings"
)

// soakSection is the leak soak's part of the report.
func soakSection(cfg soakConfig, res [2]soakResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
## Leak soak

One pod per runtime, served by one shim (the reference's containers are grouped with `+"`io.containerd.runc.v2.group`"+`):
%d containers created, run and removed (`+"`ctr run --rm`"+` of `+"`echo`"+`, with stdio), then %d execs in a container
of the pod (`+"`ctr task exec`"+` of `+"`echo`"+`), %d clients at a time, under a private containerd at debug level, after a
warm-up of a tenth of each at the same concurrency. The pod's shim is read when idle at the start, half-way through
the containers, after them, half-way through the execs and at the end; "peak" is the highest of each figure over
those and the samples taken every 100 containers and 200 execs while the clients run. Idle: ours has logged that it
trimmed itself, a second after its last request (the debug line gives its goroutine count); the reference, 3 s
after its last request once its fds, goroutines and threads hold still for a second (SIGUSR1 makes it log its
goroutines). Children are the shim's child processes (the pod's container processes; runc while it runs).

| runtime | moment | fds | goroutines | threads | children | PSS (MB) | of which anonymous | RSS (MB) |
|---|---|---|---|---|---|---|---|---|
`, cfg.containers, cfg.execs, cfg.workers)
	for k, r := range res {
		name := "ours"
		if k == 1 {
			name = "reference"
		}
		row := func(moment string, f figures) {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %.2f | %.2f | %.2f |\n",
				name, moment, f.fds, f.goroutines, f.threads, f.children, f.pss, f.pssAnon, f.rss)
		}
		for i, f := range r.idle {
			row(soakMoments[i], f)
		}
		row("peak", r.peak)
	}
	fmt.Fprintf(&b, "\nThe containers and execs took %.0f s with ours, %.0f s with the reference.\n\n", res[0].took.Seconds(), res[1].took.Seconds())
	for k, r := range res {
		name := "Ours"
		if k == 1 {
			name = "The reference"
		}
		if failed := soakFailures(r); len(failed) > 0 {
			fmt.Fprintf(&b, "- %s does not pass: %s.\n", name, strings.Join(failed, "; "))
		} else {
			fmt.Fprintf(&b, "- %s passes: fds, goroutines and children are where they began at every idle moment, threads end "+
				"within %d of the start, PSS within %.0f%%.\n", name, threadSlack, pssMargin*100)
		}
	}
	b.WriteString(soakExplained)
	return b.String()
}

const soakExplained = `
The pass rule: a leak grows with the work, so whatever a container or an exec leaves behind shows after a thousand
of them. Fds, goroutines and children must come back exactly. Threads may end a little higher: Go never ends a
thread it made, so their count is the most blocking system calls ever in flight at once, a high-water mark that a
loaded node can still push up late in the soak; a thread held by a leak is a goroutine stuck in a system call or
locked to its thread, which the goroutine count shows. PSS may move by the idle-to-idle noise of the heap (up to
6% with no trend over 4800 execs): within the margin. Ours is read a second after its last request; at the two
container moments its PSS also holds binary pages that the 30 s timers of the last starts' reservations (which
fire although the containers are gone) fault back in after the trim: the anonymous part is the one to compare.
`
