// Package task serves containerd's task API (v2 and v3) for every container
// of the pod: requests become container and process operations, errors get
// their errdefs kinds, and exits are published in order, exactly once.
package task

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"

	"github.com/containerd/ttrpc"

	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// Config is what the serving shim knows of itself.
type Config struct {
	Namespace string
	ID        string // the task that started the shim
	Bundle    string
	Debug     bool
	// PodKey names the pod's state directory: the shim's socket name, a
	// hash of containerd's address, the namespace and the pod's group key.
	PodKey string
	// PodRoot is where pods' state directories are ("": pod.DefaultRoot);
	// tests give a temporary directory.
	PodRoot string
	// ShimAlive, for Cleanup: a shim still serves the pod, so the pod's
	// namespaces are its to release.
	ShimAlive bool
	// LogTo moves the shim's log to a bundle's log fifo (nil: the log stays
	// where it is).
	LogTo func(bundle string) error

	// Reaper is the shim's one reaper (nil: process.Default()); tests give
	// a fake.
	Reaper Reaper
	// NewRuntime makes a container's OCI runtime (nil: runc's command line,
	// see runtimeFor); tests give a fake.
	NewRuntime func(RuntimeConfig) process.Runtime
	// Sandbox is the shim's sandbox service (nil: none).
	Sandbox Sandbox
}

// Reaper is what the service needs of the shim's one reaper: starting,
// waiting for and signalling its own children, and the exits of every other.
type Reaper interface {
	process.Children
	Subscribe() *process.Subscription
}

// podDir is the pod's state directory.
func podDir(cfg Config) (string, error) {
	key := cfg.PodKey
	if key == "" {
		key = cfg.ID
	}
	root := cfg.PodRoot
	if root == "" {
		root = pod.DefaultRoot
	}
	return pod.StateDir(root, cfg.Namespace, key)
}

// Publisher sends events to containerd, in the order published.
type Publisher interface {
	Publish(topic string, event interface{ ProtoName() string })
}

// consoleDir holds the short-lived console sockets, 0700 and short enough
// for a unix socket path.
const consoleDir = "/run/containerd-shim-pod-v2/console"

// Service is the task service of one pod's shim.
type Service struct {
	cfg      Config
	pub      Publisher
	reaper   Reaper
	exits    *exitRouter
	shutdown func(taskID string)

	// features are the runtimes' features, run once per binary.
	features featureCache

	// podMu guards pod, created by the first container.
	podMu sync.Mutex
	pod   *pod.Pod

	// mu guards containers, creating and logBundle.
	mu         sync.Mutex
	containers map[string]*container    // created and not yet deleted
	creating   map[string]chan struct{} // ids reserved by a Create under way; closed when it ends
	// logBundle is the bundle whose log fifo the shim writes to ("" when
	// no container was left to move to).
	logBundle string
}

// New returns the task service, routing the reaper's exits.
func New(ctx context.Context, cfg Config, pub Publisher, shutdown func(taskID string)) (*Service, error) {
	if err := os.MkdirAll(consoleDir, 0o700); err != nil {
		return nil, fmt.Errorf("create console socket dir: %w", err)
	}
	if cfg.Reaper == nil {
		cfg.Reaper = process.Default()
	}
	if cfg.NewRuntime == nil {
		cfg.NewRuntime = newRunc
	}
	s := &Service{
		cfg:        cfg,
		pub:        pub,
		reaper:     cfg.Reaper,
		shutdown:   shutdown,
		containers: make(map[string]*container),
		creating:   make(map[string]chan struct{}),
		logBundle:  cfg.Bundle,
	}
	s.exits = newExitRouter(s.exited)
	go s.exits.route(s.reaper.Subscribe().C)
	return s, nil
}

// Register serves the task API on srv.
func (s *Service) Register(srv *ttrpc.Server) {
	registerTaskService(srv, s)
}

// get returns a container. One whose Create is under way is waited for,
// as the reference shim (up to containerd 2.3) makes every request wait for
// a Create: clients look a task up as soon as its stdin ends, which may be
// before Create returns, and must find it.
func (s *Service) get(ctx context.Context, id string) (*container, error) {
	for {
		s.mu.Lock()
		c, ok := s.containers[id]
		done, creating := s.creating[id]
		s.mu.Unlock()
		switch {
		case ok:
			return c, nil
		case !creating:
			return nil, notFound("container %s", id)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// getProcess returns a container and, for a non-empty execID, its exec.
func (s *Service) getProcess(ctx context.Context, id, execID string) (*container, *execProc, error) {
	c, err := s.get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, nil, nil
	}
	e, err := c.exec(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, e, nil
}

// procOf returns the process a request names: the container's init for an
// empty exec id, else that exec.
func (s *Service) procOf(ctx context.Context, id, execID string) (*container, *process.Process, error) {
	c, e, err := s.getProcess(ctx, id, execID)
	if err != nil {
		return nil, nil, err
	}
	if e != nil {
		return c, &e.Process, nil
	}
	return c, &c.init.Process, nil
}

// starter starts children (loggers) through the reaper and waits for them.
func (s *Service) starter(cmd *exec.Cmd) error {
	if err := s.reaper.Start(cmd); err != nil {
		return err
	}
	go s.reaper.Wait(cmd)
	return nil
}

// podOf returns the pod a new container joins: the shim's sandbox's, or the
// shim's own pod, made when its first container comes.
func (s *Service) podOf(containerID, name string) (*pod.Pod, error) {
	if s.cfg.Sandbox != nil {
		if p, err := s.cfg.Sandbox.PodFor(containerID); p != nil || err != nil {
			return p, err
		}
	}
	s.podMu.Lock()
	defer s.podMu.Unlock()
	if s.pod != nil {
		return s.pod, nil
	}
	dir, err := podDir(s.cfg)
	if err != nil {
		return nil, err
	}
	p, err := pod.New(name, dir, s.reaper)
	if err != nil {
		return nil, err
	}
	s.pod = p
	return p, nil
}

// keepLogReadable keeps the shim's log where containerd reads it: containerd
// reads a container's log fifo only while that container exists, so once the
// container whose fifo the shim writes to is gone, the log moves to another
// container of the pod (the least bundle path, to be predictable). Called
// after a container is created or deleted.
func (s *Service) keepLogReadable() {
	if s.cfg.LogTo == nil {
		return
	}
	if s.cfg.Sandbox != nil && s.cfg.Sandbox.LogBundle() == s.currentLogBundle() {
		return // the sandbox's log fifo is read while the sandbox exists
	}
	s.mu.Lock()
	to := ""
	for _, c := range s.containers {
		if c.bundle == s.logBundle {
			s.mu.Unlock()
			return // its container still exists
		}
		if to == "" || c.bundle < to {
			to = c.bundle
		}
	}
	s.logBundle = to
	s.mu.Unlock()
	if to == "" {
		return // no container left: nothing reads a log now
	}
	if err := s.cfg.LogTo(to); err != nil {
		slog.Warn("move the shim's log", "bundle", to, "error", err)
		return
	}
	slog.Debug("shim log moved", "bundle", to)
}

func (s *Service) currentLogBundle() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logBundle
}
