package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	api "github.com/podv2/containerd-shim-pod-v2/api/sandbox/v1"
	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/undo"
)

// CreateSandbox makes the pod: its namespaces and its files. The pod's
// process comes with StartSandbox.
func (s *Service) CreateSandbox(ctx context.Context, r *api.CreateSandboxRequest) (*api.CreateSandboxResponse, error) {
	if err := s.create(r); err != nil {
		return nil, toRPC(err)
	}
	return &api.CreateSandboxResponse{}, nil
}

// create runs the steps of CreateSandbox, each registering its undo.
func (s *Service) create(r *api.CreateSandboxRequest) (retErr error) {
	id := r.GetSandboxId()
	if err := pod.ValidateID(id); err != nil {
		return fmt.Errorf("sandbox id: %w", err)
	}
	p, err := s.planFor(r)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	key := s.cfg.PodKey
	if key == "" {
		key = id
	}
	dir, err := pod.StateDir(s.cfg.StateRoot, s.cfg.Namespace, key)
	if err != nil {
		return err
	}
	sb := &sandbox{id: id, bundle: r.GetBundlePath(), dir: dir, plan: p, ended: make(chan struct{}), createdAt: time.Now()}

	var rollback undo.Stack
	defer func() {
		if retErr != nil {
			retErr = rollback.Unwind(retErr)
		}
	}()
	// The id is taken before any work, so a second CreateSandbox fails
	// instead of racing; the sandbox is visible once created.
	s.mu.Lock()
	if s.sb != nil {
		other := s.sb.id
		s.mu.Unlock()
		if other == id {
			return withKind(errdefs.ErrAlreadyExists, fmt.Errorf("sandbox %s: already exists", id))
		}
		return precondition("sandbox %s: this shim already serves sandbox %s", id, other)
	}
	s.sb = sb
	s.mu.Unlock()
	rollback.Push(func() error {
		s.mu.Lock()
		s.sb = nil
		s.mu.Unlock()
		return nil
	})

	if sb.pod, err = pod.New(id, dir, s.cfg.Reaper); err != nil {
		return err
	}
	if err := fault.Check("sandbox.namespaces"); err != nil {
		return err
	}
	if err := sb.pod.Found(id, p.Namespaces); err != nil {
		return err
	}
	rollback.Push(func() error {
		_, err := sb.pod.Leave(id)
		return err
	})

	files, err := s.files(p)
	if err != nil {
		return err
	}
	if err := fault.Check("sandbox.files"); err != nil {
		return err
	}
	if sb.mounts, err = pod.WriteFiles(dir, files); err != nil {
		return fmt.Errorf("files of sandbox %s: %w", id, err)
	}
	rollback.Push(func() error { return pod.RemoveFiles(dir) })

	if err := fault.Check("sandbox.record"); err != nil {
		return err
	}
	if err := saveRecord(dir, sb.record()); err != nil {
		return err
	}
	rollback.Push(func() error { return removeRecord(dir) })

	sb.mu.Lock()
	sb.state = created
	sb.mu.Unlock()
	return nil
}

// planFor decides the sandbox from CRI's PodSandboxConfig, or, without one
// (ctr sandboxes run), from the OCI spec in the bundle.
func (s *Service) planFor(r *api.CreateSandboxRequest) (*plan, error) {
	host, err := s.hostname()
	if err != nil {
		return nil, fmt.Errorf("the host's name: %w", err)
	}
	opts := r.GetOptions()
	switch {
	case opts.GetTypeUrl() != "" && isCRIConfig(opts.GetTypeUrl()):
		c, err := decodePodSandboxConfig(opts.GetValue())
		if err != nil {
			return nil, invalidf("%v", err)
		}
		return planFromCRI(c, r.GetNetnsPath(), host)
	case opts.GetTypeUrl() != "":
		return nil, invalidf("options of type %q: want %s (CRI) or none", opts.GetTypeUrl(), criConfigType)
	}
	if r.GetBundlePath() == "" {
		return nil, invalidf("no %s and no bundle", criConfigType)
	}
	path := filepath.Join(r.GetBundlePath(), "config.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, invalidf("no %s and no OCI spec in the bundle (%s)", criConfigType, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the sandbox's spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, invalidf("malformed OCI spec %s: %v", path, err)
	}
	return planFromSpec(&spec, host)
}

// files are the pod's /etc files and /dev/shm.
func (s *Service) files(p *plan) (pod.Files, error) {
	f := pod.Files{Hostname: p.Hostname, ShmSize: p.ShmSize}
	var err error
	if f.Hosts, err = os.ReadFile("/etc/hosts"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("copy the host's /etc/hosts: %w", err)
	}
	if p.DNS != nil {
		f.ResolvConf = resolvConf(p.DNS)
	} else if f.ResolvConf, err = os.ReadFile("/etc/resolv.conf"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("copy the host's /etc/resolv.conf: %w", err)
	}
	return f, nil
}
