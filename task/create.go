package task

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
	"github.com/podv2/containerd-shim-pod-v2/stdio"
)

// Create creates a container: its rootfs is mounted, its stdio set up and the
// runtime's create run. The container's init waits for Start.
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	c, err := s.create(ctx, r)
	if err != nil {
		return nil, toRPC(err)
	}
	s.keepLogReadable()
	return &taskapi.CreateTaskResponse{Pid: uint32(c.init.Pid())}, nil
}

func (s *Service) create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *container, retErr error) {
	if err := pod.ValidateID(r.ID); err != nil {
		return nil, err
	}
	opts, err := decodeOptions(r.Options)
	if err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(r.Bundle)
	if err != nil || r.Bundle == "" {
		return nil, invalid("bundle path %q of container %s is not valid", r.Bundle, r.ID)
	}
	spec, err := readSpec(bundle)
	if err != nil {
		return nil, err
	}

	// Reserve the id before any work, so a concurrent Create of the same id
	// fails instead of racing.
	// The container is visible to other requests only once created.
	c := &container{id: r.ID, bundle: bundle, execs: make(map[string]*execProc)}
	s.mu.Lock()
	_, exists := s.containers[r.ID]
	if exists || s.creating[r.ID] {
		s.mu.Unlock()
		return nil, alreadyExists("container %s", r.ID)
	}
	s.creating[r.ID] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.creating, r.ID)
		if retErr == nil {
			s.containers[r.ID] = c
		}
		s.mu.Unlock()
	}()

	// The pod's namespaces: decided by its first container, joined by every
	// one. The spec runc reads is the rewritten one.
	p, err := s.podOf(pod.GroupKey(spec.Annotations, r.ID))
	if err != nil {
		return nil, err
	}
	if err := p.Join(r.ID, spec); err != nil {
		return nil, err
	}
	c.pod = p
	defer func() {
		if retErr != nil {
			if _, err := p.Leave(r.ID); err != nil {
				slog.Error("leave pod after failed create", "id", r.ID, "error", err)
			}
		}
	}()
	if err := writeSpec(bundle, spec); err != nil {
		return nil, err
	}

	c.killAllOnExit = !ownPidNamespace(spec)
	if len(r.Rootfs) > 0 {
		target := filepath.Join(bundle, "rootfs")
		if err := mountRootfs(r.Rootfs, target); err != nil {
			return nil, fmt.Errorf("mount rootfs of %s: %w", r.ID, err)
		}
		c.rootfs = target
		defer func() {
			if retErr != nil {
				unmountRootfs(target)
			}
		}()
	}

	streams := stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	ioUID, ioGID := ioOwner(opts.IoUid, opts.IoGid, spec)
	c.init = process.NewInit(process.InitConfig{
		ID:     r.ID,
		Bundle: bundle,
		Runtime: &process.Runtime{
			Binary:        opts.BinaryName,
			Root:          runtimeRoot(opts, s.cfg.Namespace),
			SystemdCgroup: opts.SystemdCgroup,
			Debug:         s.cfg.Debug,
			LogPath:       filepath.Join(bundle, "log.json"),
			Reaper:        s.reaper,
		},
		Stdio:        streams,
		IOOptions:    stdio.Options{UID: ioUID, GID: ioGID, ContainerID: r.ID, Namespace: s.cfg.Namespace},
		Starter:      s.starter,
		NoPivot:      opts.NoPivotRoot,
		NoNewKeyring: opts.NoNewKeyring,
		ConsoleDir:   consoleDir,
	})
	c.ref = &procRef{c: c}
	if err := writeRuntimeRecord(bundle, c.init.Runtime()); err != nil {
		return nil, err
	}

	s.beginStart()
	err = c.init.Create(ctx)
	s.endStart(c.ref, c.init.Pid())
	if err != nil {
		s.release(c.ref)
		s.forget(c)
		return nil, err
	}
	s.watchCgroup(c)
	s.pub.Publish(TopicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Checkpoint:  r.Checkpoint,
		Pid:         uint32(c.init.Pid()),
	})
	s.release(c.ref)
	return c, nil
}

// readSpec reads the bundle's OCI spec.
func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, invalid("read OCI spec of bundle %s: %v", bundle, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, invalid("malformed OCI spec %s: %v", filepath.Join(bundle, "config.json"), err)
	}
	if spec.Process == nil {
		return nil, invalid("OCI spec %s has no process", filepath.Join(bundle, "config.json"))
	}
	return &spec, nil
}

// writeSpec replaces the bundle's spec, atomically.
func writeSpec(bundle string, spec *specs.Spec) error {
	data, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("marshal rewritten spec: %w", err)
	}
	tmp := filepath.Join(bundle, ".config.json.pod-v2")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write rewritten spec: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(bundle, "config.json")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write rewritten spec: %w", err)
	}
	return nil
}

// ownPidNamespace tells whether the container gets a pid namespace of its own
// (then its processes die with init).
func ownPidNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace && ns.Path == "" {
			return true
		}
	}
	return false
}

// ioOwner is who owns the container's ends of its stdio pipes: the options'
// io uid/gid if set, else the host ids the container's user maps to, so that
// a process in a user namespace can reopen /dev/stdout.
func ioOwner(uid, gid uint32, spec *specs.Spec) (int, int) {
	if uid != 0 || gid != 0 {
		return int(uid), int(gid)
	}
	if spec.Linux == nil || len(spec.Linux.UIDMappings) == 0 {
		return -1, -1
	}
	hostID := func(id uint32, maps []specs.LinuxIDMapping) int {
		for _, m := range maps {
			if id >= m.ContainerID && id < m.ContainerID+m.Size {
				return int(m.HostID + id - m.ContainerID)
			}
		}
		return -1
	}
	return hostID(spec.Process.User.UID, spec.Linux.UIDMappings), hostID(spec.Process.User.GID, spec.Linux.GIDMappings)
}

// watchCgroup finds the container's cgroup and watches it for OOM kills,
// from before the container runs so that none is missed.
func (s *Service) watchCgroup(c *container) {
	cg, err := cgroup.Load(c.init.Pid())
	if err != nil {
		slog.Warn("no cgroup for container: no stats or OOM events", "id", c.id, "error", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	id := c.id
	if err := cg.WatchOOM(ctx, func() {
		s.pub.Publish(TopicOOM, &eventstypes.TaskOOM{ContainerID: id})
	}); err != nil {
		slog.Warn("cannot watch container for OOM kills", "id", id, "error", err)
	}
	c.cgroup, c.stopOOM = cg, cancel
}
