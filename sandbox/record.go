package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
)

// recordFile is the sandbox's record in the pod's state dir: what `delete`
// must undo once the shim is gone (its process, its cgroups).
const recordFile = "sandbox.json"

type record struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle"`
	// Pid and PidStart (its start time, /proc/PID/stat field 22) name the
	// pod's process, so that a pid reused since is never killed.
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pidStart,omitempty"`
	// Leaf is the pod process's cgroup; Parents the directories of the
	// pod's cgroup the shim made, parents first.
	Leaf    []string `json:"leaf,omitempty"`
	Parents []string `json:"parents,omitempty"`
}

func (sb *sandbox) record() record {
	r := record{ID: sb.id, Bundle: sb.bundle}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	r.Parents = sb.parentsMade
	if sb.leaf != nil {
		r.Leaf = sb.leaf.Directories()
	}
	if sb.proc != nil {
		r.Pid = sb.proc.pid
		r.PidStart, _ = startTime(r.Pid)
	}
	return r
}

func saveRecord(dir string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+recordFile)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record sandbox %s: %w", r.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("record sandbox %s: %w", r.ID, err)
	}
	return nil
}

func removeRecord(dir string) error {
	if err := os.Remove(filepath.Join(dir, recordFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove sandbox record: %w", err)
	}
	return nil
}

func loadRecord(dir string) (*record, error) {
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, recordFile), err)
	}
	return &r, nil
}

// startTime is field 22 of /proc/PID/stat: when the process started.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold anything: fields count from its closing ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// CleanupConfig is what `delete` knows: the bundle containerd deletes and the
// shim's socket name (from the bundle's address file).
type CleanupConfig struct {
	Namespace, ID, PodKey, StateRoot string
	// ShimAlive: a shim still serves the pod; it owns it.
	ShimAlive bool
}

// Cleanup is `delete` for a sandbox's bundle after its shim died: the pod's
// process is killed, its cgroups removed, and the sandbox leaves the pod,
// whose pins, files and state dir go once no container is left. ok is false
// when id is not the sandbox of that pod (a container's bundle). It is
// idempotent.
func Cleanup(ctx context.Context, c CleanupConfig) (ok bool, err error) {
	if c.PodKey == "" {
		return false, nil
	}
	root := c.StateRoot
	if root == "" {
		root = pod.DefaultRoot
	}
	dir, err := pod.StateDir(root, c.Namespace, c.PodKey)
	if err != nil {
		return false, err
	}
	r, err := loadRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if r.ID != c.ID {
		return false, nil
	}
	if c.ShimAlive {
		return true, nil
	}
	var errs []error
	if r.Pid > 0 {
		if err := killRecorded(ctx, r.Pid, r.PidStart); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeLeaf(ctx, r.Leaf); err != nil {
		errs = append(errs, err)
	}
	removeParents(r.Parents)
	if err := removeRecord(dir); err != nil {
		errs = append(errs, err)
	}
	if _, err := pod.Forget(dir, c.ID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return true, fmt.Errorf("clean up sandbox %s: %w", c.ID, err)
	}
	return true, nil
}

// killRecorded kills the recorded pod process if it is still that process,
// and waits until it is gone (it is not this process's child: its parent,
// the dead shim's reaper, is gone too).
func killRecorded(ctx context.Context, pid int, start uint64) error {
	if st, err := startTime(pid); err != nil || st != start {
		return nil // gone, or another process now
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill the pod's process %d: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		st, err := startTime(pid)
		if err != nil || st != start || isZombie(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pod's process %d outlived SIGKILL: %w", pid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// isZombie: the process has exited and waits for its parent.
func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && len(data) > i+2 && data[i+2] == 'Z'
}

// removeLeaf removes the pod process's cgroup. One still emptying (its
// process just killed) is retried for a while.
func removeLeaf(ctx context.Context, dirs []string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		err := cgroup.RemoveDirs(dirs)
		if err == nil || !errors.Is(err, unix.EBUSY) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// removeParents removes the directories of the pod's cgroup the shim made,
// deepest first, as long as nothing else uses them: another pod may have
// the same cgroup parent, a container's cgroup may still be in it.
func removeParents(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := cgroup.RemoveDirs(dirs[i : i+1]); err != nil {
			slog.Debug("the pod's cgroup stays: in use", "cgroup", dirs[i], "error", err)
		}
	}
}
