package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soakConfig sizes the leak soak.
type soakConfig struct {
	containers, execs, workers int
}

// pssMargin is how much a shim's PSS may end above where it began (a
// fraction) for the soak to pass: from one idle moment to the next, ours
// moves by up to 0.3 MB (6%) with no trend over 4800 execs (heap
// fragmentation, the garbage collector's timing).
const pssMargin = 0.10

// threadSlack is how many threads a shim may end with above its start: Go
// never ends a thread it made, so the count is the most blocking system
// calls ever in flight at once, which a loaded node can still push up late
// in the soak (9 to 11 over 4800 execs at three clients). A thread kept
// by a leak is a goroutine stuck in a system call or locked to its thread:
// the goroutine count catches it.
const threadSlack = 2

// The idle moments of a soak, in order: the figures are read at each.
var soakMoments = []string{"start", "half the containers", "all containers", "half the execs", "end"}

// soakResult is one runtime's soak: its figures at each idle moment, the
// highest of each figure over all samples, and how long the soak took.
type soakResult struct {
	idle []figures // one per soakMoments
	peak figures
	took time.Duration
}

func (r soakResult) start() figures { return r.idle[0] }
func (r soakResult) end() figures   { return r.idle[len(r.idle)-1] }

// errLeak is returned when our shim does not pass the soak: the report is
// still written.
var errLeak = errors.New("the leak soak does not pass")

// soak creates and removes many containers in one pod, then runs many execs
// in a container of that pod, for each runtime, and follows the pod's shim
// process: its fds, goroutines, threads, children and memory must end where
// they began.
func (b *bench) soak() error {
	d, err := startContainerd(b.d.shimDir, true)
	if err != nil {
		return err
	}
	defer d.stop()
	log, err := openShimLog(filepath.Join(d.dir, "containerd.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	var results [2]soakResult
	for k, rt := range []string{ours, reference} {
		s := &soakRun{d: d, log: log, rt: rt, cfg: b.soakCfg, anchor: "soak-" + short(rt)}
		if results[k], err = s.run(); err != nil {
			return fmt.Errorf("%s: %w", short(rt), err)
		}
	}
	b.sections = append(b.sections, soakSection(b.soakCfg, results))
	if failed := soakFailures(results[0]); len(failed) > 0 {
		return fmt.Errorf("%w: %s", errLeak, strings.Join(failed, "; "))
	}
	return nil
}

// soakRun is one runtime's soak in progress.
type soakRun struct {
	d      *daemon
	log    *shimLog
	rt     string
	cfg    soakConfig
	anchor string // the container that keeps the pod, and runs the execs
	pid    int    // the pod's shim
	began  time.Time

	mu   sync.Mutex // guards peak, raised from several workers
	peak figures
}

func (s *soakRun) run() (soakResult, error) {
	var res soakResult
	if _, err := s.d.ctr(nil, append([]string{"run", "-d", "--null-io"}, s.podFlags()...)...); err != nil {
		return res, err
	}
	defer s.d.removeAll()
	pids := shimPIDs(s.rt, s.d.sock)
	if len(pids) != 1 {
		return res, fmt.Errorf("%d shims serve the pod, want 1", len(pids))
	}
	s.pid, s.began = pids[0], time.Now()

	// Warm up with a tenth of the work, at the soak's concurrency: the
	// shim's heap, runtime and thread pool reach their working size.
	nc, nx := s.cfg.containers, s.cfg.execs
	if err := s.containers(0, nc/10, 0); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	if err := s.execs(0, nx/10, 0); err != nil {
		return res, fmt.Errorf("warm-up: %w", err)
	}
	steps := []func() error{
		func() error { return nil },
		func() error { return s.containers(nc/10, nc/2, 100) },
		func() error { return s.containers(nc/10+nc/2, nc-nc/2, 100) },
		func() error { return s.execs(nx/10, nx/2, 200) },
		func() error { return s.execs(nx/10+nx/2, nx-nx/2, 200) },
	}
	began := time.Now()
	for i, step := range steps {
		if err := step(); err != nil {
			return res, err
		}
		f, err := s.idleSample(soakMoments[i])
		if err != nil {
			return res, err
		}
		res.idle = append(res.idle, f)
	}
	res.took = time.Since(began)
	if pids := shimPIDs(s.rt, s.d.sock); len(pids) != 1 || pids[0] != s.pid {
		return res, fmt.Errorf("the pod's shim changed during the soak: %v, was %d", pids, s.pid)
	}
	res.peak = s.peak
	return res, nil
}

// podFlags are ctr run's flags and arguments for the anchor container.
func (s *soakRun) podFlags() []string {
	return []string{"--annotation", podAnnotation(s.rt, "soak"), "--runtime", s.rt, image, s.anchor, "sleep", "1000000"}
}

// containers runs n containers of the pod to completion (ctr run --rm, with
// stdio), numbered from first; a sample every `every`.
func (s *soakRun) containers(first, n, every int) error {
	return s.parallel("containers", n, every, func(i int) error {
		_, err := s.d.ctr(nil, "run", "--rm", "--annotation", podAnnotation(s.rt, "soak"), "--runtime", s.rt,
			image, fmt.Sprintf("%s-c%d", s.anchor, first+i), "echo", "soak")
		return err
	})
}

// execs runs n execs in the anchor container (ctr task exec, with stdio).
func (s *soakRun) execs(first, n, every int) error {
	return s.parallel("execs", n, every, func(i int) error {
		_, err := s.d.ctr(nil, "tasks", "exec", "--exec-id", fmt.Sprintf("x%d", first+i), s.anchor, "echo", "soak")
		return err
	})
}

// parallel runs job(0..n-1), cfg.workers at a time, and takes a sample
// after every `every` completed jobs (none if every is 0).
func (s *soakRun) parallel(what string, n, every int, job func(i int) error) error {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, s.cfg.workers)
	for w := 0; w < s.cfg.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := job(i)
				if c := int(done.Add(1)); err == nil && every > 0 && c%every == 0 {
					err = s.busySample(fmt.Sprintf("%s %d/%d", what, c, n))
				}
				if err != nil {
					errs <- err
					next.Store(int64(n)) // the others stop at their next job
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when no worker failed
}

// busySample reads the shim's figures while the soak runs.
func (s *soakRun) busySample(at string) error {
	f, err := processFigures(s.pid)
	if err != nil {
		return err
	}
	if s.rt == ours {
		f.goroutines, err = s.log.podGoroutines(s.pid)
	} else {
		f.goroutines, err = s.log.dumpGoroutines(s.pid, 10*time.Second)
	}
	if err != nil {
		return err
	}
	s.note(at, f)
	return nil
}

// idleSample waits until the shim is idle and reads its figures. Ours logs
// when it is: a second after its last request, once it has trimmed itself.
// The reference says nothing: it counts as idle from restDelay after its
// last request, once its fds, goroutines and threads hold still for a second.
func (s *soakRun) idleSample(at string) (figures, error) {
	if s.rt == ours {
		g, err := s.log.waitPodIdle(s.pid, 30*time.Second)
		if err != nil {
			return figures{}, err
		}
		f, err := processFigures(s.pid)
		f.goroutines = g
		if err == nil {
			s.note(at+" (idle)", f)
		}
		return f, err
	}
	time.Sleep(restDelay)
	var last figures
	for i := 0; ; i++ {
		f, err := processFigures(s.pid)
		if err != nil {
			return f, err
		}
		if f.goroutines, err = s.log.dumpGoroutines(s.pid, 10*time.Second); err != nil {
			return f, err
		}
		if i > 0 && (f.fds == last.fds && f.goroutines == last.goroutines && f.threads == last.threads || i == 10) {
			s.note(at+" (idle)", f)
			return f, nil
		}
		last = f
		time.Sleep(time.Second)
	}
}

// note prints a sample and raises the peak.
func (s *soakRun) note(at string, x figures) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.peak
	p.fds, p.threads = max(p.fds, x.fds), max(p.threads, x.threads)
	p.children, p.goroutines = max(p.children, x.children), max(p.goroutines, x.goroutines)
	p.pss, p.pssAnon, p.rss = max(p.pss, x.pss), max(p.pssAnon, x.pssAnon), max(p.rss, x.rss)
	fmt.Fprintf(os.Stderr, "bench: soak %-4s %-26s %4.0fs  fds %3d  goroutines %3d  threads %2d  children %2d  PSS %5.2f MB\n",
		short(s.rt), at, time.Since(s.began).Seconds(), x.fds, x.goroutines, x.threads, x.children, x.pss)
}

// soakFailures lists what did not end where it began.
func soakFailures(r soakResult) []string {
	var failed []string
	start, end := r.start(), r.end()
	for i, f := range r.idle {
		for _, c := range []struct {
			name       string
			start, now int
		}{{"fds", start.fds, f.fds}, {"goroutines", start.goroutines, f.goroutines}, {"children", start.children, f.children}} {
			if c.now != c.start {
				failed = append(failed, fmt.Sprintf("%s %d at the start, %d after %s", c.name, c.start, c.now, soakMoments[i]))
			}
		}
	}
	if end.threads > start.threads+threadSlack {
		failed = append(failed, fmt.Sprintf("threads %d at the start, %d at the end", start.threads, end.threads))
	}
	if end.pss > start.pss*(1+pssMargin) {
		failed = append(failed, fmt.Sprintf("PSS %.2f MB at the start, %.2f MB at the end", start.pss, end.pss))
	}
	return failed
}
