//go:build linux

package pod

import (
	"fmt"

	"github.com/moby/sys/mountinfo"
)

// mountsUnder lists the mounts at dir or below it, deepest last as the
// kernel lists them (mounted later = listed later).
func mountsUnder(dir string) ([]*mountinfo.Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return ms, nil
}

// isMountPoint tells whether something is mounted at dir (a resolved path).
func isMountPoint(dir string) (bool, error) {
	mounted, err := mountinfo.Mounted(dir)
	if err != nil {
		return false, fmt.Errorf("is %s a mount point: %w", dir, err)
	}
	return mounted, nil
}
