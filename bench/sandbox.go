package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// settleAfterRemoval is how long the latency pairs wait after removing a pod.
const settleAfterRemoval = 500 * time.Millisecond

// The three ratios for Kubernetes pods, under one containerd 2.4 with
// CRI: ours as the pod's sandbox (handler "pod", sandboxer = "shim") against
// containerd-shim-runc-v2 with the pause container (handler "runc").
func (b *bench) sandbox() error {
	d, err := startCRIDaemon(b.d.shimDir)
	if err != nil {
		return err
	}
	defer d.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	handler := func(rt string) string {
		if rt == ours {
			return "pod"
		}
		return "runc"
	}
	// Warm up both handlers.
	for _, rt := range []string{ours, reference} {
		if _, err := d.runPod(ctx, handler(rt), "warm-"+short(rt), true, nil); err != nil {
			return err
		}
	}
	if err := d.removePods(ctx); err != nil {
		return err
	}

	var calls [2][3][]float64 // runtime -> CRI call -> ms, one per pair
	o, r, ratio, err := pairs(b.n, func(rt string, i int) (float64, error) {
		var ph phases
		start := time.Now()
		_, err := d.runPod(ctx, handler(rt), fmt.Sprintf("lat-%s-%d", short(rt), i), true, &ph)
		took := ms(time.Since(start))
		if err != nil {
			return 0, err
		}
		k := 0
		if rt == reference {
			k = 1
		}
		for c := range ph {
			calls[k][c] = append(calls[k][c], ph[c])
		}
		err = d.removePods(ctx)
		// The kernel destroys a removed pod's network namespace in the
		// background, holding the lock that the next pod's CNI bridge
		// setup needs: measured back to back, a pod's CNI took 17-26 ms
		// after the other runtime's removal against 10-11 ms from a quiet
		// node, for either runtime. Each pod starts from a quiet node.
		time.Sleep(settleAfterRemoval)
		return took, err
	})
	if err != nil {
		return err
	}
	b.add("Kubernetes pod + 1 container started", "ms", "<= 0.5", "CRI RunPodSandbox, CreateContainer, StartContainer; containerd 2.4", o, r, ratio)
	for c, name := range []string{"RunPodSandbox", "CreateContainer", "StartContainer"} {
		o, r := median(calls[0][c]), median(calls[1][c])
		b.add("  of which "+name, "ms", "", "the same pairs, this CRI call alone", o, r, o/r)
	}

	const burst = 50
	var rate [2]float64
	for k, rt := range []string{ours, reference} {
		start := time.Now()
		for i := 0; i < burst; i++ {
			if _, err := d.runPod(ctx, handler(rt), fmt.Sprintf("burst-%s-%d", short(rt), i), false, nil); err != nil {
				return err
			}
		}
		rate[k] = burst / time.Since(start).Seconds()
		if err := d.removePods(ctx); err != nil {
			return err
		}
	}
	b.add("Kubernetes pods started per second", "pods/s", ">= 2", fmt.Sprintf("%d RunPodSandbox one after another", burst), rate[0], rate[1], rate[0]/rate[1])

	const pods = 20
	var perPod, cpuPct [2]float64
	var shares [2]string
	for k, rt := range []string{ours, reference} {
		for i := 0; i < pods; i++ {
			if _, err := d.runPod(ctx, handler(rt), fmt.Sprintf("mem-%s-%d", short(rt), i), true, nil); err != nil {
				return err
			}
		}
		// Stats are read every second, as kubelet reads them through CRI
		// (and containerd 2.4 reads every sandbox's metrics).
		pollCtx, stopPoll := context.WithCancel(ctx)
		polled := make(chan error, 1)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if _, err := d.rs.ListPodSandboxStats(pollCtx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil && pollCtx.Err() == nil {
					polled <- fmt.Errorf("ListPodSandboxStats: %w", err)
					return
				}
				if _, err := d.rs.ListContainerStats(pollCtx, &runtimeapi.ListContainerStatsRequest{}); err != nil && pollCtx.Err() == nil {
					polled <- fmt.Errorf("ListContainerStats: %w", err)
					return
				}
				select {
				case <-pollCtx.Done():
					polled <- nil
					return
				case <-t.C:
				}
			}
		}()
		time.Sleep(5 * time.Second) // past start-up: the polled state
		var samples []float64
		var shim, pod float64
		cpu0, wall0 := d.podCPU(rt), time.Now()
		for s := 0; s < 10; s++ {
			sh, pp := d.podMemory(rt)
			samples = append(samples, (sh+pp)/pods)
			shim, pod = shim+sh/pods/10, pod+pp/pods/10
			time.Sleep(time.Second)
		}
		cpuPct[k] = 100 * (d.podCPU(rt) - cpu0) / time.Since(wall0).Seconds() / pods
		stopPoll()
		if err := <-polled; err != nil {
			return err
		}
		perPod[k] = median(samples)
		shares[k] = fmt.Sprintf("%.2f + %.2f", shim, pod)
		if err := d.removePods(ctx); err != nil {
			return err
		}
	}
	b.add("memory per Kubernetes pod, 20 pods polled every second", "MB", "<= 0.5", fmt.Sprintf(
		"PSS of each pod's shim + its own process (ours %s MB) or pause (reference %s MB), /20, median of 10 samples",
		shares[0], shares[1]), perPod[0], perPod[1], perPod[0]/perPod[1])
	b.add("CPU per Kubernetes pod, 20 pods polled every second", "%", "", "user+system time of each pod's shim and own process or pause over the 10 s, /20",
		cpuPct[0], cpuPct[1], cpuPct[0]/cpuPct[1])
	return nil
}

// podCPU is the CPU time (s) the pods' own processes of runtime rt used so
// far: the shims and the pod processes or pauses, as podMemory counts them.
func (d *criDaemon) podCPU(rt string) float64 {
	var total float64
	for _, pid := range d.podPids(rt) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

// podMemory sums the PSS (MB) of the pods' own processes of runtime rt: the
// shims serving the daemon, and each pod's process (ours) or pause
// container (reference); the containers' own processes are not counted.
func (d *criDaemon) podMemory(rt string) (shims, podProcs float64) {
	for _, pid := range d.shimPids(rt) {
		shims += pss(pid)
	}
	for _, pid := range d.ownPids(rt) {
		podProcs += pss(pid)
	}
	return shims, podProcs
}

func (d *criDaemon) podPids(rt string) []int { return append(d.shimPids(rt), d.ownPids(rt)...) }

// shimPids are the shims of runtime rt serving the daemon.
func (d *criDaemon) shimPids(rt string) []int {
	shimBin := "containerd-shim-runc-v2"
	if rt == ours {
		shimBin = "containerd-shim-pod-v2"
	}
	return processesOf(func(argv []string, pid int) bool {
		return filepath.Base(argv[0]) == shimBin && strings.Contains(strings.Join(argv, " "), d.sock)
	})
}

// ownPids are the pods' own processes of runtime rt: ours, or the pauses.
func (d *criDaemon) ownPids(rt string) []int {
	return processesOf(func(argv []string, pid int) bool {
		if !inCgroup(pid, d.cgroup) {
			return false
		}
		if rt == ours {
			return argv[0] == "containerd-shim-pod-v2:pod"
		}
		return strings.Join(argv, " ") == "/bin/sleep 2147483647"
	})
}

// pss is a process's PSS in MB.
func pss(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
