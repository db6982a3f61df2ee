//go:build linux

package pod

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// UserNamespaceFor returns an open user namespace with the mappings, for
// id-mapped mounts (the namespace of an id-mapped mount only lends its
// mappings): the pod's own when the pod has a user namespace with exactly
// these mappings, else a throwaway one made for the caller, which lives as
// long as the file. The caller closes it.
func (p *Pod) UserNamespaceFor(uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	if err := checkMappings(uids, gids); err != nil {
		return nil, err
	}
	p.mu.Lock()
	own := ""
	if p.ns.HasUser() && sameMappings(uids, p.ns.UIDMappings) && sameMappings(gids, p.ns.GIDMappings) {
		own = p.ns.UserPath
	}
	p.mu.Unlock()
	if own != "" {
		f, err := os.Open(own)
		if err != nil {
			return nil, fmt.Errorf("open the user namespace of pod %s: %w", p.id, err)
		}
		return f, nil
	}
	return newUserNamespace(p.runner, uids, gids)
}

// newUserNamespace makes a user namespace with the mappings in a child (Go
// cannot unshare one itself), opens it and lets the child go.
func newUserNamespace(r Runner, uids, gids []specs.LinuxIDMapping) (*os.File, error) {
	var f *os.File
	req := Request{NewUser: true, UIDMappings: uids, GIDMappings: gids}
	err := withHolder(r, req, func(cmd *exec.Cmd) error {
		var err error
		f, err = os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
		if err != nil {
			return fmt.Errorf("open the user namespace of holder %d: %w", cmd.Process.Pid, err)
		}
		// Opened by pid: it was the holder's if the holder is not reaped
		// yet, which the pidfd behind Signal tells.
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			f.Close()
			f = nil
			return fmt.Errorf("namespace holder %d is gone before its user namespace was opened: %w", cmd.Process.Pid, err)
		}
		return nil
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("make a user namespace mapping uid %s, gid %s: %w", formatMappings(uids), formatMappings(gids), err)
	}
	return f, nil
}
