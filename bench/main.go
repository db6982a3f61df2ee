// Command bench measures containerd-shim-pod-v2 against containerd-shim-runc-v2
// side by side, under one private containerd, pair by pair (ours, then the
// reference), and writes the table to docs/BENCHMARKS.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
)

const (
	ours      = "io.containerd.pod.v2"
	reference = "io.containerd.runc.v2"
)

func main() {
	n := flag.Int("n", 20, "pairs for the latency measurements")
	big := flag.Int("big", 3, "pairs for the 1 GiB measurements")
	shimBin := flag.String("shim", "bin/containerd-shim-pod-v2", "the shim binary to measure")
	out := flag.String("out", "docs/BENCHMARKS.md", "where to write the report")
	only := flag.String("only", "", "run only the groups matching this regexp (run, exec, stdout, stdin, memory, share, podns, sandbox, soak); the report is printed, not written")
	var soak soakConfig
	flag.IntVar(&soak.containers, "soak-containers", 1000, "containers created and removed in the leak soak's pod")
	flag.IntVar(&soak.execs, "soak-execs", 2000, "execs in the leak soak")
	flag.IntVar(&soak.workers, "soak-clients", 3, "the leak soak's clients running at once")
	flag.Parse()
	var onlyRE *regexp.Regexp
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fatalf("-only: %v", err)
		}
		onlyRE = re
	}

	shim, err := filepath.Abs(*shimBin)
	if err != nil || !exists(shim) {
		fatalf("shim binary %s missing: run make build", *shimBin)
	}
	d, err := startContainerd(filepath.Dir(shim), false)
	if err != nil {
		fatalf("%v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		d.stop()
		os.Exit(130)
	}()
	rows, sections, err := measureAll(d, *n, *big, soak, onlyRE)
	d.stop()
	if err != nil && !errors.Is(err, errLeak) {
		fatalf("%v", err)
	}
	report := renderReport(rows, sections, shim, *n, *big)
	fmt.Print(report)
	if onlyRE == nil { // a partial report does not replace the whole one
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			fatalf("write %s: %v", *out, err)
		}
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
