// Package sandbox serves containerd's sandbox API
// (containerd.runtime.sandbox.v1.Sandbox, containerd 2.x with
// sandboxer = "shim"): the shim is the pod's sandbox. CreateSandbox makes the
// pod's namespaces (CRI's network namespace and the user namespace that owns
// it, or namespaces of its own for ctr) and its files, StartSandbox starts
// the pod's own process (pod/podproc) in its cgroup, whose namespaces CRI
// makes every container join, StopSandbox ends it, ShutdownSandbox removes
// everything of the pod and lets the shim exit. See the contract in
// SANDBOX.md's terms: exact strings where containerd compares them.
//
// The task service knows the sandbox only through the methods it needs
// (PodFor, Pid, LogBundle); the sandbox knows the task service's containers
// only to remove those left at ShutdownSandbox.
package sandbox

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// Config is what the sandbox service is told of the shim.
type Config struct {
	Namespace string
	// PodKey names the pod's state dir (the shim's socket name); "" is the
	// sandbox id.
	PodKey string
	// StateRoot is where pods' state dirs are (default pod.DefaultRoot).
	StateRoot string
	// Reaper is the shim's one reaper (nil: process.Default()).
	Reaper Reaper
	// Exit asks the shim to exit once it holds nothing.
	Exit func(id string)
}

// Reaper is what the sandbox needs of the shim's reaper: start and wait for
// the pod process's starter, signal the pod's process (its child), and
// every child's exit.
type Reaper interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) (int, error)
	Signal(pid int, sig syscall.Signal) error
	Subscribe() *process.Subscription
}

// Containers are the task service's containers, which ShutdownSandbox
// removes if containerd left any.
type Containers interface {
	RemoveAll(ctx context.Context) error
}

// Service is the sandbox service of a shim: at most one sandbox.
type Service struct {
	cfg        Config
	exits      *exitWatch
	containers Containers
	hostname   func() (string, error)

	// mu guards sb: the shim's sandbox, from CreateSandbox (set before its
	// steps, so a second one is refused) until ShutdownSandbox.
	mu sync.Mutex
	sb *sandbox
}

// New returns the sandbox service.
func New(cfg Config) *Service {
	if cfg.Reaper == nil {
		cfg.Reaper = process.Default()
	}
	if cfg.StateRoot == "" {
		cfg.StateRoot = pod.DefaultRoot
	}
	if cfg.Exit == nil {
		cfg.Exit = func(string) {}
	}
	return &Service{cfg: cfg, exits: newExitWatch(cfg.Reaper.Subscribe().C), hostname: os.Hostname}
}

// SetContainers gives the service the task service's containers; call it
// before serving.
func (s *Service) SetContainers(c Containers) { s.containers = c }

// state is where a sandbox is in its life.
type state int

const (
	creating state = iota // CreateSandbox under way
	created               // CreateSandbox done, StartSandbox not
	running               // the pod's process lives
	stopped               // the pod's process ended, or StopSandbox
)

// sandbox is the shim's sandbox.
type sandbox struct {
	id, bundle, dir string
	plan            *plan
	pod             *pod.Pod
	mounts          []specs.Mount // the pod's files, for its containers
	createdAt       time.Time

	// op serializes the steps that change the sandbox: Start, Stop,
	// Shutdown, Update.
	op sync.Mutex

	// mu guards the fields below.
	mu    sync.Mutex
	state state
	proc  *podProcess // the pod's process once started
	// ended is closed when the sandbox will run no more: its process ended,
	// or it was stopped or shut down before it ran.
	ended     chan struct{}
	endedOnce sync.Once
	// podCgroup is the pod's cgroup (nil: none), leaf the pod process's
	// (nil once removed); parentsMade are the directories of the pod's
	// cgroup (and above) the shim made, to remove once nothing uses them.
	podCgroup, leaf *cgroup.Cgroup
	parentsMade     []string
}

// podProcess is the pod's own process.
type podProcess struct {
	pid  int
	done chan struct{} // closed with exit set
	exit process.Exit
}

func (sb *sandbox) end() {
	sb.endedOnce.Do(func() { close(sb.ended) })
}

// get returns the sandbox with id: NotFound for any other.
func (s *Service) get(id string) (*sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb == nil || s.sb.id != id || s.sb.state == creating {
		return nil, notFound("sandbox %s: not found", id)
	}
	return s.sb, nil
}

// Busy says whether the shim holds a sandbox: it never exits while it does.
func (s *Service) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sb != nil
}

// PodFor returns the pod a container joins: the sandbox's (nil when the
// shim serves no sandbox, and the task service makes the pod). A sandbox
// that is not running takes no container: its namespaces are gone.
func (s *Service) PodFor(containerID string) (*pod.Pod, error) {
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb == nil {
		return nil, nil
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.state != running {
		return nil, precondition("container %s cannot join sandbox %s: it is not ready", containerID, sb.id)
	}
	return sb.pod, nil
}

// Pid returns the pid of the pod's process of sandbox id (0 before it
// started); ok is false if id is not the shim's sandbox.
func (s *Service) Pid(id string) (pid int, ok bool) {
	sb, err := s.get(id)
	if err != nil {
		return 0, false
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.proc != nil && sb.state == running {
		pid = sb.proc.pid
	}
	return pid, true
}

// LogBundle is the bundle whose log fifo containerd reads for as long as the
// sandbox exists: the shim's log stays there. "" without a sandbox.
func (s *Service) LogBundle() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sb == nil {
		return ""
	}
	return s.sb.bundle
}
