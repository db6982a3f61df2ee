package shim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Config is what containerd tells the shim on its command line and in its
// environment (and, from 2.3, in the bootstrap parameters on stdin).
type Config struct {
	Namespace     string
	ID            string
	Bundle        string // the bundle directory: -bundle, else the working directory
	GRPCAddress   string // -address: containerd's gRPC socket
	TTRPCAddress  string // TTRPC_ADDRESS: where events go
	PublishBinary string
	Debug         bool
	SocketDir     string // where the shim's socket lives
	// SocketPath is the pod's socket: set in the serving shim, and in delete
	// from the bundle's address file. It names the pod's state too.
	SocketPath string
	// ShimAlive, in delete: a shim still answers on SocketPath.
	ShimAlive bool

	version bool
	info    bool
}

// DefaultSocketDir is where shim sockets live unless containerd says otherwise.
const DefaultSocketDir = "/run/containerd/s"

func parseFlags(args []string) (*Config, string, error) {
	cfg := &Config{}
	fs := flag.NewFlagSet(Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace that owns the shim")
	fs.StringVar(&cfg.ID, "id", "", "id of the task")
	fs.StringVar(&cfg.Bundle, "bundle", "", "path to the bundle if not the working directory")
	fs.StringVar(&cfg.GRPCAddress, "address", "", "grpc address back to containerd")
	fs.StringVar(&cfg.PublishBinary, "publish-binary", "", "path to publish binary (unused: events go over ttrpc)")
	fs.BoolVar(&cfg.Debug, "debug", false, "enable debug output in logs")
	fs.BoolVar(&cfg.version, "v", false, "show the shim version and exit")
	fs.BoolVar(&cfg.info, "info", false, "print the runtime info and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			os.Exit(0)
		}
		return nil, "", err
	}
	action := fs.Arg(0)
	if fs.NArg() > 1 {
		return nil, "", fmt.Errorf("unexpected arguments %q", fs.Args()[1:])
	}
	if cfg.Bundle == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, "", fmt.Errorf("working directory: %w", err)
		}
		cfg.Bundle = wd
	}
	cfg.TTRPCAddress = os.Getenv("TTRPC_ADDRESS")
	if cfg.Namespace == "" {
		cfg.Namespace = os.Getenv("NAMESPACE")
	}
	cfg.SocketDir = DefaultSocketDir
	if action != "" || cfg.version || cfg.info {
		return cfg, action, nil
	}
	if cfg.Namespace == "" || cfg.ID == "" {
		return nil, "", errors.New("-namespace and -id are required")
	}
	return cfg, action, nil
}
