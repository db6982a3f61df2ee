package task

import (
	"context"
	"sync"

	"github.com/podv2/containerd-shim-pod-v2/cgroup"
	"github.com/podv2/containerd-shim-pod-v2/pod"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// container is one container of the pod.
type container struct {
	id     string
	bundle string
	init   *process.Init
	ref    *procRef // init's route for exits
	pod    *pod.Pod // the pod it joined
	rootfs string   // where the rootfs mounts are, "" if the shim mounted none
	// cgroup is the container's cgroup, nil if it could not be found; its
	// OOM watch ends with stopOOM.
	cgroup  *cgroup.Cgroup
	stopOOM context.CancelFunc
	// killAllOnExit: the container has no pid namespace of its own, so its
	// other processes do not die with init.
	killAllOnExit bool

	order exitOrder

	// execMu guards execs and closed: once the container is being deleted
	// (closed), no exec can be added; an exec's exec-added event is
	// published under it, so never after the container's delete.
	execMu sync.Mutex
	execs  map[string]*execProc
	closed bool
}

type execProc struct {
	*process.Exec
	ref *procRef
}

func newContainer(id, bundle string) *container {
	c := &container{id: id, bundle: bundle, execs: make(map[string]*execProc)}
	c.ref = &procRef{c: c}
	return c
}

// exec returns one of the container's execs.
func (c *container) exec(id string) (*execProc, error) {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	e, ok := c.execs[id]
	if !ok {
		return nil, notFound("exec %s of container %s", id, c.id)
	}
	return e, nil
}

// addExec adds an exec and runs announce (its event); it fails if the id
// is taken or the container is being deleted. announce runs before the
// container can be closed: a container's delete comes after the events of
// the execs added to it.
func (c *container) addExec(e *process.Exec, announce func()) (*execProc, error) {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	if c.closed {
		return nil, precondition("cannot exec in container %s: it is being deleted", c.id)
	}
	if _, ok := c.execs[e.ID]; ok {
		return nil, alreadyExists("exec %s in container %s", e.ID, c.id)
	}
	ep := &execProc{Exec: e}
	ep.ref = &procRef{c: c, exec: ep}
	c.execs[e.ID] = ep
	announce()
	return ep, nil
}

func (c *container) hasExec(id string) bool {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	_, ok := c.execs[id]
	return ok
}

// removeExec forgets a deleted exec.
func (c *container) removeExec(id string) {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	delete(c.execs, id)
}

// close refuses new execs from now on and returns those that never
// started, for the caller to discard: their readied runtimes wait for a spec.
func (c *container) close() []*execProc {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	c.closed = true
	var created []*execProc
	for id, e := range c.execs {
		if e.Status() == process.Created {
			created = append(created, e)
			delete(c.execs, id)
		}
	}
	return created
}

// execPids maps the pids of the container's started execs to their ids.
func (c *container) execPids() map[int]string {
	c.execMu.Lock()
	defer c.execMu.Unlock()
	m := make(map[int]string, len(c.execs))
	for id, e := range c.execs {
		if pid := e.Pid(); pid > 0 {
			m[pid] = id
		}
	}
	return m
}
