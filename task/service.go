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
	"google.golang.org/protobuf/proto"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
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
	// ShimAlive, for Cleanup: a shim still serves the pod, so the pod's
	// namespaces are its to release.
	ShimAlive bool
	// LogTo moves the shim's log to a bundle's log fifo (nil: the log stays
	// where it is).
	LogTo func(bundle string) error
}

// podDir is the pod's state directory.
func podDir(cfg Config) (string, error) {
	key := cfg.PodKey
	if key == "" {
		key = cfg.ID
	}
	return pod.StateDir(pod.DefaultRoot, cfg.Namespace, key)
}

// Publisher sends events to containerd, in the order published.
type Publisher interface {
	Publish(topic string, event proto.Message)
}

// consoleDir holds the short-lived console sockets, 0700 and short enough
// for a unix socket path.
const consoleDir = "/run/containerd-shim-pod-v2/console"

// Service is the task service of one pod's shim.
type Service struct {
	cfg      Config
	pub      Publisher
	reaper   *process.Reaper
	shutdown func()

	// podMu guards pod, created by the first container.
	podMu sync.Mutex
	pod   *pod.Pod

	// mu guards containers, creating, byPid, pendingStarts and unclaimed: the routing
	// of reaped exits to processes. Never held while the runtime runs.
	mu         sync.Mutex
	containers map[string]*container
	creating   map[string]bool // ids reserved by a Create under way
	byPid      map[int]*procRef
	// pendingStarts counts processes whose pid is not known yet; while any
	// is pending, exits of unknown pids are kept in unclaimed, since one of
	// them may be the pending process dying before its pid was read.
	pendingStarts int
	unclaimed     map[int]process.Exit
	// logBundle is the bundle whose log fifo the shim writes to ("" when
	// no container was left to move to); also guarded by mu.
	logBundle string
}

// New returns the task service, with its reaper running.
func New(ctx context.Context, cfg Config, pub Publisher, shutdown func()) (*Service, error) {
	if err := os.MkdirAll(consoleDir, 0o700); err != nil {
		return nil, fmt.Errorf("create console socket dir: %w", err)
	}
	s := &Service{
		cfg:        cfg,
		pub:        pub,
		reaper:     process.Default(),
		shutdown:   shutdown,
		containers: make(map[string]*container),
		creating:   make(map[string]bool),
		byPid:      make(map[int]*procRef),
		unclaimed:  make(map[int]process.Exit),
		logBundle:  cfg.Bundle,
	}
	go s.routeExits(s.reaper.Subscribe())
	return s, nil
}

// Register serves the task API on srv.
func (s *Service) Register(srv *ttrpc.Server) {
	registerTaskService(srv, s)
}

// container is one container of the pod.
type container struct {
	id     string
	bundle string
	init   *process.Init
	ref    *procRef
	pod    *pod.Pod // the pod it joined
	rootfs string   // where the rootfs mounts are, "" if the shim mounted none
	// cgroup is the container's cgroup, nil if it could not be found; its
	// OOM watch ends with stopOOM.
	cgroup  *cgroup.Cgroup
	stopOOM context.CancelFunc
	// killAllOnExit: the container has no pid namespace of its own, so its
	// other processes do not die with init.
	killAllOnExit bool

	// mu guards execs, running and heldInitExit, and orders the container's
	// exit events: execs first, init last.
	mu    sync.Mutex
	execs map[string]*execProc
	// running counts execs that were started and have not exited.
	running      int
	heldInitExit *process.Exit
}

type execProc struct {
	*process.Exec
	ref *procRef
}

// procRef is how an exit finds its process.
type procRef struct {
	c    *container
	exec *process.Exec // nil for the container's init
	// starting is set while a create or start is under way: an exit that
	// arrives then is held in deferred until the event of that step is out.
	starting bool
	deferred *process.Exit
}

func (s *Service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, notFound("container %s", id)
	}
	return c, nil
}

// getProcess returns the init (execID "") or the exec of a container.
func (s *Service) getProcess(id, execID string) (*container, *execProc, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.execs[execID]
	if !ok {
		return nil, nil, notFound("exec %s of container %s", execID, id)
	}
	return c, e, nil
}

// starter starts children (loggers) through the reaper and waits for them.
func (s *Service) starter(cmd *exec.Cmd) error {
	if err := s.reaper.Start(cmd); err != nil {
		return err
	}
	go s.reaper.Wait(cmd)
	return nil
}

// podOf returns the shim's pod, made when its first container comes.
func (s *Service) podOf(name string) (*pod.Pod, error) {
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
