package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	taskapi "github.com/podv2/containerd-shim-pod-v2/api/runtime/task/v2"

	"github.com/podv2/containerd-shim-pod-v2/fault"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// runtimeFile records, in the bundle, how the container's runtime was run, so
// that cleanup after a crash runs the same one.
const runtimeFile = "pod-v2-runtime.json"

type runtimeRecord struct {
	Binary string `json:"binary,omitempty"`
	Root   string `json:"root"`
}

// RuntimeConfig is how a container's OCI runtime is run, from its options.
type RuntimeConfig struct {
	Binary, Root, LogPath string
	SystemdCgroup, Debug  bool
	Children              process.Children
}

// newRunc is the runtime the shim runs: runc's command line.
func newRunc(c RuntimeConfig) process.Runtime {
	return &process.Runc{
		Binary:        c.Binary,
		Root:          c.Root,
		SystemdCgroup: c.SystemdCgroup,
		Debug:         c.Debug,
		LogPath:       c.LogPath,
		Children:      c.Children,
	}
}

func writeRuntimeRecord(bundle string, rc RuntimeConfig) error {
	if err := fault.Check("task.record"); err != nil {
		return fmt.Errorf("record runtime: %w", err)
	}
	data, err := json.Marshal(runtimeRecord{Binary: rc.Binary, Root: rc.Root})
	if err != nil {
		return err
	}
	tmp := filepath.Join(bundle, "."+runtimeFile)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record runtime: %w", err)
	}
	return os.Rename(tmp, filepath.Join(bundle, runtimeFile))
}

func removeRuntimeRecord(bundle string) error {
	if err := os.Remove(filepath.Join(bundle, runtimeFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove runtime record: %w", err)
	}
	return nil
}

// Cleanup is the `delete` action: the shim that served the container is
// gone, and what it left of the container goes. It is idempotent.
func Cleanup(ctx context.Context, cfg Config) (*taskapi.DeleteResponse, error) {
	rec := runtimeRecord{Root: filepath.Join(defaultRuntimeRoot, cfg.Namespace)}
	if data, err := os.ReadFile(filepath.Join(cfg.Bundle, runtimeFile)); err == nil {
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("read %s: %w", runtimeFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", runtimeFile, err)
	}
	rt := &process.Runc{
		Binary:   rec.Binary,
		Root:     rec.Root,
		LogPath:  filepath.Join(cfg.Bundle, "log.json"),
		Children: process.Default(),
	}
	// containerd 1.6 runs delete after every normal disconnect too, when the
	// container is long gone: no runtime state, no runtime call.
	if _, err := os.Stat(filepath.Join(rec.Root, cfg.ID)); err == nil {
		if err := rt.Delete(ctx, cfg.ID, true); err != nil && !process.IsNotExist(err) {
			return nil, fmt.Errorf("delete container %s from the runtime: %w", cfg.ID, err)
		}
	}
	if err := unmountRootfs(filepath.Join(cfg.Bundle, "rootfs")); err != nil {
		return nil, err
	}
	// With the shim gone, its pod's pins are released with the last container.
	if !cfg.ShimAlive && cfg.PodKey != "" {
		dir, err := podDir(cfg)
		if err != nil {
			return nil, err
		}
		if err := pod.ReleaseMounts(dir, cfg.ID); err != nil {
			return nil, err
		}
		if _, err := pod.Forget(dir, cfg.ID); err != nil {
			return nil, fmt.Errorf("forget container %s in its pod: %w", cfg.ID, err)
		}
	}
	return DeletedResponse(), nil
}

// DeletedResponse is what `delete` prints for what it cleaned up: killed
// now, as the reference shim reports it.
func DeletedResponse() *taskapi.DeleteResponse {
	return &taskapi.DeleteResponse{
		ExitedAt:   timestamppb.New(time.Now()),
		ExitStatus: 128 + 9,
	}
}
