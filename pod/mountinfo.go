//go:build linux

package pod

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is one line of /proc/self/mountinfo, as much as the pod needs.
type mount struct {
	Point  string // where it is mounted
	FSType string
	Tags   []string // optional fields: shared:N, master:N, propagate_from:N, unbindable
}

// mounts lists the mounts of the calling process's mount namespace.
func mounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		m := mount{Point: unescapeMountPath(fields[4])}
		for i := 6; i < len(fields)-1; i++ {
			if fields[i] == "-" {
				m.FSType = fields[i+1]
				break
			}
			m.Tags = append(m.Tags, fields[i])
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescapeMountPath undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134) in mountinfo paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder lists the mounts at dir or below it, deepest last as the
// kernel lists them (mounted later = listed later).
func mountsUnder(dir string) ([]mount, error) {
	all, err := mounts()
	if err != nil {
		return nil, err
	}
	var out []mount
	for _, m := range all {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m)
		}
	}
	return out, nil
}

// isMountPoint tells whether something is mounted at dir (a resolved path):
// one statx where the kernel (5.8+) reports STATX_ATTR_MOUNT_ROOT, else the
// mount table.
func isMountPoint(dir string) (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx)
	if err == nil && stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	ms, err := mountsUnder(dir)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.Point == dir {
			return true, nil
		}
	}
	return false, nil
}
