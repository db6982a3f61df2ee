package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// row is one line of the report: a value for each runtime, the ratio
// ours/reference, and the target ratio ("" if none).
type row struct {
	name, unit     string
	ours, ref      float64
	ratio          float64
	target, method string
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairs runs f for ours then the reference, n times, and returns the medians
// and the median of the per-pair ratios.
func pairs(n int, f func(runtime string, i int) (float64, error)) (float64, float64, float64, error) {
	var a, b, r []float64
	for i := 0; i < n; i++ {
		x, err := f(ours, i)
		if err != nil {
			return 0, 0, 0, err
		}
		y, err := f(reference, i)
		if err != nil {
			return 0, 0, 0, err
		}
		a, b, r = append(a, x), append(b, y), append(r, x/y)
	}
	return median(a), median(b), median(r), nil
}

func short(runtime string) string {
	if runtime == ours {
		return "pod"
	}
	return "runc"
}

// bench is what the measurements share: the daemon, the pair counts, the
// rows so far.
type bench struct {
	d       *daemon
	n, big  int
	devnull *os.File
	rows    []row
}

func (b *bench) add(name, unit, target, method string, o, r, ratio float64) {
	b.rows = append(b.rows, row{name: name, unit: unit, ours: o, ref: r, ratio: ratio, target: target, method: method})
	if r == 0 {
		fmt.Fprintf(os.Stderr, "bench: %-46s ours %10.2f %s\n", name, o, unit)
		return
	}
	fmt.Fprintf(os.Stderr, "bench: %-46s ours %10.2f %-3s reference %10.2f  ratio %.2f\n", name, o, unit, r, ratio)
}

func ms(t time.Duration) float64 { return float64(t) / float64(time.Millisecond) }

// group is a set of measurements run together; -only picks groups by name.
type group struct {
	name string
	run  func(b *bench) error
}

var groups = []group{
	{"run", (*bench).run},
	{"exec", (*bench).exec},
	{"stdout", (*bench).stdout},
	{"stdin", (*bench).stdin},
	{"memory", (*bench).memory},
	{"share", (*bench).share},
	{"podns", (*bench).podNamespaces},
	{"sandbox", (*bench).sandbox},
}

func measureAll(d *daemon, n, big int, only *regexp.Regexp) ([]row, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	b := &bench{d: d, n: n, big: big, devnull: devnull}
	// Warm up both runtimes and the image.
	for _, rt := range []string{ours, reference} {
		if _, err := d.timed(nil, devnull, "run", "--rm", "--null-io", "--runtime", rt, image, "warm-"+short(rt), "true"); err != nil {
			return nil, err
		}
	}
	for _, g := range groups {
		if only != nil && !only.MatchString(g.name) {
			continue
		}
		if err := g.run(b); err != nil {
			return b.rows, fmt.Errorf("%s: %w", g.name, err)
		}
	}
	return b.rows, nil
}

func (b *bench) run() error {
	o, r, ratio, err := pairs(b.n, func(rt string, i int) (float64, error) {
		t, err := b.d.timed(nil, b.devnull, "run", "--rm", "--null-io", "--runtime", rt, image, fmt.Sprintf("run-%s-%d", short(rt), i), "true")
		return ms(t), err
	})
	if err != nil {
		return err
	}
	b.add("ctr run --rm of /bin/true", "ms", "<= 0.95", "image, overlayfs", o, r, ratio)
	return nil
}

func (b *bench) exec() error {
	for _, rt := range []string{ours, reference} {
		if _, err := b.d.ctr(nil, "run", "-d", "--runtime", rt, image, "exec-"+short(rt), "sleep", "100000"); err != nil {
			return err
		}
	}
	defer b.d.removeAll()
	// Execs are short: twice the pairs for a steadier median.
	o, r, ratio, err := pairs(2*b.n, func(rt string, i int) (float64, error) {
		t, err := b.d.timed(nil, b.devnull, "tasks", "exec", "--exec-id", fmt.Sprintf("e%d", i), "exec-"+short(rt), "true")
		return ms(t), err
	})
	if err != nil {
		return err
	}
	b.add("exec of /bin/true", "ms", "<= 0.95", "ctr task exec, twice the pairs", o, r, ratio)
	return nil
}

func (b *bench) stdout() error {
	o, r, ratio, err := pairs(b.big, func(rt string, i int) (float64, error) {
		t, err := b.d.timed(nil, b.devnull, "run", "--rm", "--runtime", rt, image, fmt.Sprintf("out-%s-%d", short(rt), i),
			"dd", "if=/dev/zero", "bs=1M", "count=1024")
		return ms(t), err
	})
	if err != nil {
		return err
	}
	b.add("1 GiB stdout, container to ctr", "ms", "<= 0.5", "dd bs=1M, ctr's stdout to /dev/null", o, r, ratio)
	return nil
}

func (b *bench) stdin() error {
	o, r, ratio, err := pairs(b.big, func(rt string, i int) (float64, error) {
		pr, pw := io.Pipe()
		go func() {
			// ctr closes stdin only for an EOF after the task exists.
			time.Sleep(500 * time.Millisecond)
			buf := make([]byte, 1<<20)
			for j := 0; j < 1024; j++ {
				if _, err := pw.Write(buf); err != nil {
					return
				}
			}
			pw.Close()
		}()
		t, err := b.d.timed(pr, b.devnull, "run", "--rm", "--runtime", rt, image, fmt.Sprintf("in-%s-%d", short(rt), i),
			"dd", "of=/dev/null", "bs=1M")
		pr.Close()
		return ms(t) - 500, err
	})
	if err != nil {
		return err
	}
	b.add("1 GiB stdin, ctr to container", "ms", "", "dd of=/dev/null, 0.5 s start delay subtracted", o, r, ratio)
	return nil
}

// startPairs is how many times the start of 50 containers in one pod is
// measured, ours then the reference: a single pair moves with whatever else
// the machine runs (it once read 1.82 and 0.64 within an hour).
const startPairs = 3

func (b *bench) memory() error {
	var starts [2][]float64 // runtime -> ms, one per pair
	for _, size := range []int{1, 10, 50} {
		pairsHere := 1
		if size == 50 {
			pairsHere = startPairs
		}
		var mem [2][2]float64 // runtime -> pss, rss (MB), from the first pair
		for p := 0; p < pairsHere; p++ {
			for k, rt := range []string{ours, reference} {
				group := "io.containerd.pod.v2.pod=m"
				if rt == reference {
					group = "io.containerd.runc.v2.group=m"
				}
				start := time.Now()
				for i := 0; i < size; i++ {
					if _, err := b.d.ctr(nil, "run", "-d", "--annotation", group, "--runtime", rt, image, fmt.Sprintf("m-%s-%d", short(rt), i), "sleep", "100000"); err != nil {
						return err
					}
				}
				if size == 50 {
					starts[k] = append(starts[k], ms(time.Since(start)))
				}
				if p == 0 {
					time.Sleep(1500 * time.Millisecond)
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
	}
	var ratios []float64
	for i := range starts[0] {
		ratios = append(ratios, starts[0][i]/starts[1][i])
	}
	b.add("start 50 containers in one pod", "ms", "", fmt.Sprintf("sequential ctr run -d, %d pairs", startPairs), median(starts[0]), median(starts[1]), median(ratios))
	return nil
}

func (b *bench) podNamespaces() error {
	ns, err := podNamespaceTime()
	if err != nil {
		return fmt.Errorf("pod namespace benchmark: %w", err)
	}
	b.add("create and pin a pod's user+net namespaces", "ms", "", "go test -bench BenchmarkCreatePinned ./pod/", ns, 0, 0)
	return nil
}

// shimMemory sums PSS and RSS (MB) of the shims of runtime serving this daemon.
func shimMemory(runtime, address string) (pss, rss float64) {
	bin := "containerd-shim-runc-v2"
	if runtime == ours {
		bin = "containerd-shim-pod-v2"
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		argv := strings.Split(string(data), "\x00")
		if filepath.Base(argv[0]) != bin || !strings.Contains(string(data), address+"\x00") {
			continue
		}
		f, err := os.Open(filepath.Join(filepath.Dir(p), "smaps_rollup"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(fields[1], 64)
			switch fields[0] {
			case "Pss:":
				pss += kb / 1024
			case "Rss:":
				rss += kb / 1024
			}
		}
		f.Close()
	}
	return pss, rss
}

var nsPerOp = regexp.MustCompile(`BenchmarkCreatePinned-\d+\s+\d+\s+(\d+) ns/op`)

func podNamespaceTime() (float64, error) {
	out, err := exec.Command("go", "test", "-run", "XXX", "-bench", "BenchmarkCreatePinned$", "-benchtime", "50x", "./pod/").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	m := nsPerOp.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no result in %s", out)
	}
	ns, _ := strconv.ParseFloat(string(m[1]), 64)
	return ns / 1e6, nil
}
