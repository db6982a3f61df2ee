// Package shim is the process contract with containerd: the start, delete,
// -info and -v actions, and serving ttrpc with an event publisher. It knows
// nothing of tasks: it is handed the handlers that do.
package shim

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// Name is the shim's binary name.
const Name = "containerd-shim-pod-v2"

// RuntimeName is the runtime containerd knows the shim as.
const RuntimeName = "io.containerd.pod.v2"

// Version and Revision are set at build time with -ldflags -X.
var (
	Version  = "0.1.0-dev"
	Revision = ""
)

// Publisher sends events to containerd.
type Publisher interface {
	Publish(topic string, event interface{ ProtoName() string })
}

// Handlers are what the shim is handed by its caller.
type Handlers struct {
	// GroupKey names the pod a container belongs to, from its spec's annotations.
	GroupKey func(annotations map[string]string, id string) string
	// Register registers the ttrpc services of a serving shim and returns
	// whether they hold anything (a container, a sandbox): the shim never
	// exits while they do. exit asks the shim to exit once they hold nothing
	// (containerd's task Shutdown of a task id); it also exits when no
	// client is left.
	Register func(ctx context.Context, cfg *Config, pub Publisher, srv *ttrpc.Server, exit func(taskID string)) (busy func() bool, err error)
	// Delete cleans up after a dead shim for the bundle in cfg and returns the
	// DeleteResponse to print.
	Delete func(ctx context.Context, cfg *Config) (any, error)
	// Info returns the RuntimeInfo for -info, for the runtime options given.
	Info func(ctx context.Context, opts *anypb.Any) (any, error)
}

// Run parses the command line and runs the action asked for. It exits the process.
func Run(h Handlers) {
	limitProcs()
	cfg, action, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
		os.Exit(2)
	}
	if err := run(h, cfg, action); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// limitProcs runs Go code on one thread at a time unless GOMAXPROCS says
// otherwise: the shim's work is short bursts between waits, and the kernel
// moves the containers' bytes (splice); with one P no thread spins looking
// for work, CPU the runtime (runc) it is waiting for gets instead. Blocking
// system calls still get threads of their own. containerd puts GOMAXPROCS=2
// in the environment of every shim it starts, which is kept: one P measured
// the same there (memory and start latency of 20 polled pods, containerd
// 2.4), so this is for a shim started without it (by hand, by a test).
func limitProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

func run(h Handlers, cfg *Config, action string) error {
	ctx := context.Background()
	switch {
	case cfg.version:
		printVersion(os.Stdout)
		return nil
	case cfg.info:
		return info(ctx, h, os.Stdin, os.Stdout)
	}
	switch action {
	case "start":
		return start(ctx, h, cfg, os.Stdin, os.Stdout)
	case "delete":
		return deleteAction(ctx, h, cfg, os.Stdout)
	case "":
		return serve(ctx, h, cfg)
	default:
		return fmt.Errorf("unknown action %q (want start, delete or none)", action)
	}
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "%s:\n  Version:  %s\n", Name, Version)
	rev := Revision
	goVersion := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && rev == "" {
				rev = s.Value
			}
		}
	}
	if rev != "" {
		fmt.Fprintf(w, "  Revision: %s\n", rev)
	}
	fmt.Fprintf(w, "  Go version: %s\n", goVersion)
}

// info answers -info: a RuntimeInfo for the options on stdin.
func info(ctx context.Context, h Handlers, stdin io.Reader, stdout io.Writer) error {
	data, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read options: %w", err)
	}
	var opts *anypb.Any
	if len(data) > 0 {
		opts = &anypb.Any{}
		if err := wire.Unmarshal(data, opts); err != nil {
			return fmt.Errorf("decode runtime options on stdin: %w", err)
		}
	}
	msg, err := h.Info(ctx, opts)
	if err != nil {
		return err
	}
	out, err := wire.Marshal(msg)
	if err != nil {
		return fmt.Errorf("marshal runtime info: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}
