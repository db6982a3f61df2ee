package main

import (
	"fmt"
	"time"
)

// The shims' memory in the four situations we track: at rest (pods of 1,
// 10 and 50 containers), under steady polling, right after a burst, and per
// pod with many pods on the node (shared pages divide among the shims).

// restDelay is how long a shim is left alone before it counts as at rest:
// ours trims itself a second after its last request, and a loaded machine
// may delay that.
const restDelay = 3 * time.Second

// podAnnotation puts a container into the pod named name.
func podAnnotation(rt, name string) string {
	if rt == ours {
		return "io.containerd.pod.v2.pod=" + name
	}
	return "io.containerd.runc.v2.group=" + name
}

// runInPod starts a container that sleeps in the pod named pod.
func (b *bench) runInPod(rt, pod, id string) error {
	_, err := b.d.ctr(nil, "run", "-d", "--annotation", podAnnotation(rt, pod), "--runtime", rt, image, id, "sleep", "1000000")
	return err
}

func (b *bench) memory() error {
	for _, f := range []func() error{b.memoryAtRest, b.memoryPolled, b.memoryAfterBursts, b.memoryManyPods} {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// startPairs is how many times the start of 50 containers in one pod is
// measured, ours then the reference: a single pair moves with whatever else
// the machine runs (it once read 1.82 and 0.64 within an hour).
const startPairs = 3

func (b *bench) memoryAtRest() error {
	for _, size := range []int{1, 10, 50} {
		pairs := 1
		if size == 50 {
			pairs = startPairs
		}
		var mem [2][2]float64   // runtime -> pss, rss (MB), from the first pair
		var starts [2][]float64 // runtime -> ms, one per pair
		for p := 0; p < pairs; p++ {
			for k, rt := range []string{ours, reference} {
				start := time.Now()
				for i := 0; i < size; i++ {
					if err := b.runInPod(rt, "m", fmt.Sprintf("m-%s-%d", short(rt), i)); err != nil {
						return err
					}
				}
				starts[k] = append(starts[k], ms(time.Since(start)))
				if p == 0 {
					time.Sleep(restDelay)
					pss, rss := shimMemory(rt, b.d.sock)
					mem[k] = [2]float64{pss, rss}
				}
				b.d.removeAll()
			}
		}
		target := ""
		if size <= 10 {
			target = "<= 0.5"
		}
		b.add(fmt.Sprintf("shim PSS, %d container(s) in one pod", size), "MB", target, "smaps_rollup, all shims of the runtime", mem[0][0], mem[1][0], mem[0][0]/mem[1][0])
		b.add(fmt.Sprintf("shim RSS, %d container(s) in one pod", size), "MB", "", "smaps_rollup", mem[0][1], mem[1][1], mem[0][1]/mem[1][1])
		if size == 50 {
			var ratios []float64
			for i := range starts[0] {
				ratios = append(ratios, starts[0][i]/starts[1][i])
			}
			b.add("start 50 containers in one pod", "ms", "", fmt.Sprintf("sequential ctr run -d, %d pairs", pairs), median(starts[0]), median(starts[1]), median(ratios))
		}
	}
	return nil
}

// memoryPolled reads the shim's PSS while a client asks for the container's
// stats and runs an exec probe every second, as a node agent does: ours never
// stays idle long enough to trim itself.
func (b *bench) memoryPolled() error {
	const polls, skip = 15, 5 // the first samples are the shim settling
	var pss [2]float64
	for k, rt := range []string{ours, reference} {
		id := "poll-" + short(rt)
		if err := b.runInPod(rt, id, id); err != nil {
			return err
		}
		var samples []float64
		tick := time.NewTicker(time.Second)
		for i := 0; i < polls; i++ {
			<-tick.C
			if i >= skip {
				p, _ := shimMemory(rt, b.d.sock)
				samples = append(samples, p)
			}
			if _, err := b.d.ctr(nil, "tasks", "metrics", id); err != nil {
				tick.Stop()
				return err
			}
			if _, err := b.d.ctr(nil, "tasks", "exec", "--exec-id", fmt.Sprintf("probe%d", i), id, "true"); err != nil {
				tick.Stop()
				return err
			}
		}
		tick.Stop()
		pss[k] = median(samples)
		b.d.removeAll()
	}
	b.add("shim PSS under polling, 1 container", "MB", "", fmt.Sprintf("ctr task metrics + an exec probe each second; median of %d samples, each just before a poll", polls-skip),
		pss[0], pss[1], pss[0]/pss[1])
	return nil
}

// memoryAfterBursts reads the shim's PSS at once after a burst of work on a
// pod at rest: ten containers started, or fifteen execs, back to back.
func (b *bench) memoryAfterBursts() error {
	const starts, execs = 10, 15
	var afterStarts, afterExecs [2]float64
	for k, rt := range []string{ours, reference} {
		pod := "burst-" + short(rt)
		if err := b.runInPod(rt, pod, pod); err != nil {
			return err
		}
		time.Sleep(restDelay)
		for i := 0; i < starts; i++ {
			if err := b.runInPod(rt, pod, fmt.Sprintf("%s-%d", pod, i)); err != nil {
				return err
			}
		}
		afterStarts[k], _ = shimMemory(rt, b.d.sock)
		b.d.removeAll()

		if err := b.runInPod(rt, pod, pod); err != nil {
			return err
		}
		time.Sleep(restDelay)
		for i := 0; i < execs; i++ {
			if _, err := b.d.ctr(nil, "tasks", "exec", "--exec-id", fmt.Sprintf("b%d", i), pod, "true"); err != nil {
				return err
			}
		}
		afterExecs[k], _ = shimMemory(rt, b.d.sock)
		b.d.removeAll()
	}
	b.add(fmt.Sprintf("shim PSS right after %d starts", starts), "MB", "", fmt.Sprintf("ctr run -d back to back into a pod of 1 at rest (%d containers then)", starts+1),
		afterStarts[0], afterStarts[1], afterStarts[0]/afterStarts[1])
	b.add(fmt.Sprintf("shim PSS right after %d execs", execs), "MB", "", "ctr task exec back to back into a pod of 1 at rest",
		afterExecs[0], afterExecs[1], afterExecs[0]/afterExecs[1])
	return nil
}

// memoryManyPods reads the PSS of many pods' shims together: pages the
// shims share (the binary, the page cache) are divided among them. Both
// runtimes' pods run side by side, read at rest and again minutes later:
// by then a shim has done what an idle Go program does now and then (a
// forced garbage collection every two minutes, timers), which ours does not
// trim after.
func (b *bench) memoryManyPods() error {
	const pods = 20
	const later = 150 * time.Second
	for i := 0; i < pods; i++ {
		for _, rt := range []string{ours, reference} {
			id := fmt.Sprintf("pod%d-%s", i, short(rt))
			if err := b.runInPod(rt, id, id); err != nil {
				return err
			}
		}
	}
	defer b.d.removeAll()
	began := time.Now()
	time.Sleep(restDelay)
	var rest, after [2]float64
	for k, rt := range []string{ours, reference} {
		if n := len(shimPIDs(rt, b.d.sock)); n != pods {
			return fmt.Errorf("%d shims of %s for %d pods", n, short(rt), pods)
		}
		pss, _ := shimMemory(rt, b.d.sock)
		rest[k] = pss / pods
	}
	time.Sleep(time.Until(began.Add(later)))
	for k, rt := range []string{ours, reference} {
		pss, _ := shimMemory(rt, b.d.sock)
		after[k] = pss / pods
	}
	b.add(fmt.Sprintf("shim PSS per pod, %d pods of 1 container", pods), "MB", "", fmt.Sprintf("sum of the %d shims' PSS / %d, at rest", pods, pods),
		rest[0], rest[1], rest[0]/rest[1])
	b.add(fmt.Sprintf("shim PSS per pod, the same %.1f min later", later.Minutes()), "MB", "", "the same, still at rest, counted from the last start",
		after[0], after[1], after[0]/after[1])
	return nil
}
