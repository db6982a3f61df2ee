package task

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
	"github.com/podv2/containerd-shim-pod-v2/stdio"
	"github.com/podv2/containerd-shim-pod-v2/undo"
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

// create runs the steps of a Create, each registering its undo: a failure
// at any step undoes every step before it, in reverse, so that nothing is
// left (mounts, runtime state, the pod's namespaces) and the same id can be
// created again.
func (s *Service) create(ctx context.Context, r *taskapi.CreateTaskRequest) (_ *container, retErr error) {
	if err := pod.ValidateID(r.ID); err != nil {
		return nil, err
	}
	opts, own, err := decodeAllOptions(r.Options)
	if err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(r.Bundle)
	if err != nil || r.Bundle == "" {
		return nil, invalid("bundle path %q of container %s is not valid", r.Bundle, r.ID)
	}
	specData, doc, err := readSpec(bundle)
	if err != nil {
		return nil, err
	}
	spec := doc.Spec
	// runc moves the container's first process into its cgroup late in its
	// create: the kernel's wait before that move runs from now instead.
	cgroup.WarmMigrationLock()

	var rollback undo.Stack
	defer func() {
		if retErr != nil {
			retErr = rollback.Unwind(retErr)
		}
	}()

	// The id is reserved before any work, so a concurrent Create of the
	// same id fails instead of racing; the container is visible to other
	// requests only once created.
	if err := s.reserve(r.ID); err != nil {
		return nil, err
	}
	rollback.Push(func() error { s.unreserve(r.ID, nil); return nil })
	c := newContainer(r.ID, bundle)

	// The pod's namespaces: decided by its first container, joined by every
	// one. The spec runc reads is the rewritten one.
	p, err := s.podOf(r.ID, pod.GroupKey(spec.Annotations, r.ID))
	if err != nil {
		return nil, err
	}
	if err := p.Join(r.ID, spec); err != nil {
		return nil, err
	}
	c.pod = p
	rollback.Push(func() error {
		_, err := p.Leave(r.ID)
		return err
	})
	// The shim's part of the mounts (rro, id-mapped, sysfs); what it stages
	// goes once the runtime has made the container.
	rollback.Push(func() error { return pod.ReleaseMounts(p.Dir(), r.ID) })
	if err := s.prepareMounts(ctx, r.ID, bundle, spec, opts.BinaryName, own, p); err != nil {
		return nil, err
	}
	if err := writeSpec(bundle, doc); err != nil {
		return nil, fmt.Errorf("spec of container %s: %w", r.ID, err)
	}
	rollback.Push(func() error { return restoreSpec(bundle, specData) })

	c.killAllOnExit = !ownPidNamespace(spec)
	if len(r.Rootfs) > 0 {
		target := filepath.Join(bundle, "rootfs")
		stage, err := p.MountsDir(r.ID)
		if err != nil {
			return nil, err
		}
		idm := &rootfsIDMap{stage: stage, userns: p.UserNamespaceFor}
		if err := mountRootfs(r.Rootfs, target, idm); err != nil {
			return nil, fmt.Errorf("mount rootfs of %s: %w", r.ID, err)
		}
		c.rootfs = target
		rollback.Push(func() error { return unmountRootfs(target) })
	}

	rc := RuntimeConfig{
		Binary:        opts.BinaryName,
		Root:          runtimeRoot(opts, s.cfg.Namespace),
		SystemdCgroup: opts.SystemdCgroup,
		Debug:         s.cfg.Debug,
		LogPath:       filepath.Join(bundle, "log.json"),
		Children:      s.reaper,
	}
	if err := writeRuntimeRecord(bundle, rc); err != nil {
		return nil, fmt.Errorf("container %s: %w", r.ID, err)
	}
	rollback.Push(func() error { return removeRuntimeRecord(bundle) })

	ioUID, ioGID := ioOwner(opts.IoUid, opts.IoGid, spec)
	c.init = process.NewInit(process.InitConfig{
		ID:           r.ID,
		Bundle:       bundle,
		Runtime:      s.cfg.NewRuntime(rc),
		Children:     s.reaper,
		Stdio:        stdio.Config{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		IOOptions:    stdio.Options{UID: ioUID, GID: ioGID, ContainerID: r.ID, Namespace: s.cfg.Namespace},
		Starter:      s.starter,
		NoPivot:      opts.NoPivotRoot,
		NoNewKeyring: opts.NoNewKeyring,
		ConsoleDir:   consoleDir,
	})
	// The runtime's create is the last step that can fail; a failure after
	// the runtime created the container is undone by Init.Create itself.
	err = s.exits.during(c.ref, func(hooks process.Hooks) error {
		_, err := c.init.Create(ctx, hooks)
		return err
	}, func(pid int) {
		s.watchCgroup(c)
		s.unreserve(c.id, c)
		s.pub.Publish(TopicCreate, &eventstypes.TaskCreate{
			ContainerID: r.ID,
			Bundle:      bundle,
			Rootfs:      r.Rootfs,
			IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
			Checkpoint:  r.Checkpoint,
			Pid:         uint32(pid),
		})
	})
	if err == nil {
		// The container has its own binds of what was staged.
		if err := pod.ReleaseMounts(p.Dir(), r.ID); err != nil {
			slog.Warn("release the mounts staged for a created container: they go with the pod", "id", r.ID, "error", err)
		}
	}
	return c, err
}

// reserve takes a container id for a Create under way.
func (s *Service) reserve(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, exists := s.containers[id]
	_, creating := s.creating[id]
	if exists || creating {
		return alreadyExists("container %s", id)
	}
	s.creating[id] = make(chan struct{})
	return nil
}

// unreserve ends a Create, successful (with c) or not; requests waiting for
// it go on.
func (s *Service) unreserve(id string, c *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil {
		s.containers[id] = c
	}
	close(s.creating[id])
	delete(s.creating, id)
}

// readSpec reads the bundle's OCI spec, and returns its bytes too.
func readSpec(bundle string) ([]byte, *pod.SpecDoc, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, nil, invalid("read OCI spec of bundle %s: %v", bundle, err)
	}
	doc, err := pod.ParseSpec(data)
	if err != nil {
		return nil, nil, invalid("malformed OCI spec %s: %v", filepath.Join(bundle, "config.json"), err)
	}
	if doc.Spec.Process == nil {
		return nil, nil, invalid("OCI spec %s has no process", filepath.Join(bundle, "config.json"))
	}
	return data, doc, nil
}

// writeSpec replaces the bundle's spec, atomically, with the rewritten
// members of doc.Spec (pod.SpecDoc says which).
func writeSpec(bundle string, doc *pod.SpecDoc) error {
	data, err := doc.Marshal()
	if err != nil {
		return fmt.Errorf("marshal rewritten spec: %w", err)
	}
	return replaceSpec(bundle, data)
}

// restoreSpec puts back the spec the bundle came with.
func restoreSpec(bundle string, data []byte) error {
	return replaceSpec(bundle, data)
}

func replaceSpec(bundle string, data []byte) error {
	if err := fault.Check("task.spec"); err != nil {
		return err
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
