//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The shim stages the mounts it makes for a container (id-mapped copies of
// its volumes) in the pod's private state dir, under mounts/<container>:
// nothing there propagates to other mount namespaces, the runtime binds them
// into the container, and they go once the runtime has (ReleaseMounts), or
// with the pod's state dir at the latest.

// MountsDir is the directory for the mounts the shim stages for a container.
func (p *Pod) MountsDir(containerID string) (string, error) {
	return mountsDir(p.dir, containerID)
}

func mountsDir(podDir, containerID string) (string, error) {
	if err := ValidateID(containerID); err != nil {
		return "", err
	}
	return filepath.Join(podDir, "mounts", containerID), nil
}

// ReleaseMounts unmounts what was staged for the container in the pod's
// state dir podDir and removes its directory. Nothing staged is fine, and
// so is calling it again.
func ReleaseMounts(podDir, containerID string) error {
	if err := checkDir(podDir); err != nil {
		return err
	}
	dir, err := mountsDir(podDir, containerID)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release the mounts staged for container %s: %w", containerID, err)
	}
	if err := unmountAll(real); err != nil {
		return fmt.Errorf("release the mounts staged for container %s: %w", containerID, err)
	}
	// The mount points are empty once unmounted: removed one by one, never
	// recursively, so that a mount still there (a host volume) is never
	// emptied.
	ents, err := os.ReadDir(real)
	if err != nil {
		return fmt.Errorf("release the mounts staged for container %s: %w", containerID, err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(real, e.Name())); err != nil {
			return fmt.Errorf("release the mounts staged for container %s: %w", containerID, err)
		}
	}
	if err := os.Remove(real); err != nil {
		return fmt.Errorf("release the mounts staged for container %s: %w", containerID, err)
	}
	return nil
}
