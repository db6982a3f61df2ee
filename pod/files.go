//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Files are a sandbox pod's own files, which the containers of the pod
// share: CRI writes them next to a pause container, and does not when the
// shim is the sandbox.
type Files struct {
	Hostname   string // /etc/hostname's line
	Hosts      []byte // /etc/hosts
	ResolvConf []byte // /etc/resolv.conf
	// ShmSize is the size of the pod's /dev/shm, a tmpfs; 0: the pod uses
	// the host's /dev/shm (hostIPC), and mounts none.
	ShmSize int64
}

// filesDir is where a pod's files are, in its state dir.
const filesDir = "files"

// WriteFiles writes the pod's files into its state dir (prepared) and mounts
// its /dev/shm there, and returns the mounts that give them to a container
// (Shared.Mounts). RemoveFiles undoes it; so does the pod's teardown.
func WriteFiles(dir string, f Files) (_ []specs.Mount, retErr error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	fdir := filepath.Join(dir, filesDir)
	if err := os.Mkdir(fdir, 0o755); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	defer func() {
		if retErr != nil {
			RemoveFiles(dir)
		}
	}()
	bind := func(dest, src string) specs.Mount {
		return specs.Mount{Destination: dest, Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}}
	}
	var mounts []specs.Mount
	for _, file := range []struct {
		name, dest string
		data       []byte
	}{
		{"hostname", "/etc/hostname", []byte(f.Hostname + "\n")},
		{"hosts", "/etc/hosts", f.Hosts},
		{"resolv.conf", "/etc/resolv.conf", f.ResolvConf},
	} {
		path := filepath.Join(fdir, file.name)
		if err := os.WriteFile(path, file.data, 0o644); err != nil {
			return nil, fmt.Errorf("pod file %s: %w", file.dest, err)
		}
		mounts = append(mounts, bind(file.dest, path))
	}
	if f.ShmSize > 0 {
		shm := filepath.Join(fdir, "shm")
		if err := os.Mkdir(shm, 0o755); err != nil {
			return nil, fmt.Errorf("pod /dev/shm: %w", err)
		}
		data := "mode=1777,size=" + strconv.FormatInt(f.ShmSize, 10)
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
			return nil, fmt.Errorf("mount the pod's /dev/shm: %w", err)
		}
		mounts = append(mounts, bind(devShm, shm))
	}
	return mounts, nil
}

// RemoveFiles unmounts the pod's /dev/shm and removes its files. Files
// already gone are fine.
func RemoveFiles(dir string) error {
	if err := checkDir(dir); err != nil {
		return err
	}
	fdir := filepath.Join(dir, filesDir)
	if _, err := os.Lstat(fdir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	real, err := filepath.EvalSymlinks(fdir)
	if err != nil {
		return fmt.Errorf("remove pod files: %w", err)
	}
	if err := unmountAll(real); err != nil {
		return fmt.Errorf("remove pod files: %w", err)
	}
	if err := os.RemoveAll(real); err != nil {
		return fmt.Errorf("remove pod files: %w", err)
	}
	return nil
}
