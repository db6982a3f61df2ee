//go:build linux

package pod

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/fault"
)

// Pod is a live pod: its namespaces, decided by the first container to join,
// and the containers that joined and have not left. Its state dir holds the
// pins of the namespaces it created and state.json.
type Pod struct {
	id     string
	dir    string
	runner Runner
	// lockDir takes the state dir's lock (the package's lockDir; a test
	// makes it fail).
	lockDir func(dir string) (unlock func(), err error)

	// mu serializes Join and Leave: the namespaces are decided once, by the
	// first container to join, and state.json lists exactly the containers
	// that joined and have not left.
	mu         sync.Mutex
	ns         *Namespaces // nil while the pod has no container
	containers []string
	shared     Shared // what joining containers get besides ns
}

// New returns the pod id with its state in dir (see StateDir). Children it
// needs are started and waited through r, the shim's reaper.
func New(id, dir string, r Runner) (*Pod, error) {
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	return &Pod{id: id, dir: dir, runner: r, lockDir: lockDir}, nil
}

// ID is the pod's name (its group key).
func (p *Pod) ID() string { return p.id }

// Dir is the pod's state dir.
func (p *Pod) Dir() string { return p.dir }

// Join adds a container to the pod and rewrites its spec to join the pod's
// namespaces (see Rewrite). The first container decides the namespaces (see
// Decide): they are created or adopted here. A later container may not set up
// a network of its own (see networkSetupHook). Errors wrap ErrInvalidID,
// ErrInvalidSpec or ErrConflict when the container is at fault. A container
// that joined leaves with Leave, whether its runtime create worked or not.
func (p *Pod) Join(containerID string, spec *specs.Spec) (retErr error) {
	if err := ValidateID(containerID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.containers, containerID) {
		return fmt.Errorf("container %s is already in pod %s", containerID, p.id)
	}
	if p.ns == nil {
		req, err := Decide(spec)
		if err != nil {
			return fmt.Errorf("container %s, first of pod %s: %w", containerID, p.id, err)
		}
		unlock, err := p.setupLocked(req)
		if err != nil {
			return err
		}
		defer unlock()
		defer func() {
			if retErr != nil {
				p.teardownLocked()
			}
		}()
	} else {
		unlock, err := p.lockDir(p.dir)
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.id, err)
		}
		defer unlock()
		// Only the first container may set up the pod's network itself.
		if err := checkNetworkSetup(p.id, p.ns, spec); err != nil {
			return fmt.Errorf("spec of container %s: %w", containerID, err)
		}
	}

	if err := Rewrite(p.id, p.ns, spec); err != nil {
		return fmt.Errorf("spec of container %s: %w", containerID, err)
	}
	p.shared.apply(spec)
	if err := fault.Check("pod.join"); err != nil {
		return fmt.Errorf("container %s joining pod %s: %w", containerID, p.id, err)
	}
	p.containers = append(p.containers, containerID)
	if err := p.saveLocked(); err != nil {
		p.containers = p.containers[:len(p.containers)-1]
		return err
	}
	return nil
}

// setupLocked brings the namespaces req asks for into the pod's prepared
// state dir, and returns with the dir locked; on failure nothing is left.
func (p *Pod) setupLocked(req Request) (unlock func(), err error) {
	if err := PrepareStateDir(p.dir); err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.id, err)
	}
	unlock, err = p.lockDir(p.dir)
	if err != nil {
		CleanupStateDir(p.dir)
		return nil, fmt.Errorf("pod %s: %w", p.id, err)
	}
	// A state the dir already holds is another shim's of this pod (a live
	// one, or one whose `delete` has not run yet): its pins are not this
	// shim's to make again, nor to clean up.
	if st, err := Load(p.dir); err == nil {
		unlock()
		return nil, fmt.Errorf("pod %s: its state dir %s holds the state of another shim of the pod (members %v): %w",
			p.id, p.dir, st.Containers, ErrInUse)
	}
	ns, err := Setup(p.dir, p.runner, req)
	if err != nil {
		unlock()
		CleanupStateDir(p.dir)
		return nil, fmt.Errorf("namespaces of pod %s: %w", p.id, err)
	}
	p.ns = ns
	return unlock, nil
}

// Found makes the pod's namespaces from req for a member that is no
// container (a sandbox: containerd 2.x with sandboxer = "shim"), which joins
// as the pod's first member: the pod lives until it leaves, whatever its
// containers do. Containers that join later get the pod's namespaces, and
// what Share adds.
func (p *Pod) Found(memberID string, req Request) (retErr error) {
	if err := ValidateID(memberID); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ns != nil {
		return fmt.Errorf("pod %s already has its namespaces (members %v)", p.id, p.containers)
	}
	unlock, err := p.setupLocked(req)
	if err != nil {
		return err
	}
	defer unlock()
	p.containers = []string{memberID}
	if err := p.saveLocked(); err != nil {
		p.teardownLocked()
		return err
	}
	return nil
}

// Share sets what every container that joins from now on gets besides the
// pod's user and network namespaces (see Shared). A zero Shared stops it.
func (p *Pod) Share(s Shared) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shared = s
}

// Leave removes a container from the pod. When it was the last, the pod's
// pins and state dir go, and last is true; a container joining after that
// starts the pod anew. Leaving twice is harmless. A Leave that fails leaves
// the pod as it was (the container still in it, in memory and in
// state.json, and the pins that could not go still held), so that calling
// it again does the whole Leave.
func (p *Pod) Leave(containerID string) (last bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.containers, containerID)
	if i < 0 {
		return len(p.containers) == 0, nil
	}
	unlock, err := p.lockDir(p.dir)
	if err != nil {
		return false, fmt.Errorf("pod %s: %w", p.id, err)
	}
	defer unlock()
	rest := slices.Delete(slices.Clone(p.containers), i, i+1)
	if len(rest) > 0 {
		if err := p.save(rest); err != nil {
			return false, err
		}
		p.containers = rest
		return false, nil
	}
	if err := errors.Join(p.ns.Release(), CleanupStateDir(p.dir)); err != nil {
		// Release keeps what it could not unpin: a retry tries that again.
		return false, fmt.Errorf("tear down pod %s: %w", p.id, err)
	}
	p.ns = nil
	p.containers = nil
	p.shared = Shared{}
	return true, nil
}

// Namespaces returns a copy of the pod's namespaces, without the pins (the
// pod releases those); ok is false while no container has joined.
func (p *Pod) Namespaces() (ns Namespaces, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ns == nil {
		return Namespaces{}, false
	}
	ns = p.ns.clone()
	ns.Pins = nil
	return ns, true
}

// Containers lists the containers in the pod, in the order they joined.
func (p *Pod) Containers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.containers)
}

func (p *Pod) saveLocked() error {
	return p.save(p.containers)
}

// save writes state.json with the pod's namespaces and containers.
func (p *Pod) save(containers []string) error {
	return Save(p.dir, &State{ID: p.id, Namespaces: p.ns.clone(), Containers: containers})
}

// teardownLocked releases the namespaces and removes the state dir.
func (p *Pod) teardownLocked() error {
	err := errors.Join(p.ns.Release(), CleanupStateDir(p.dir))
	p.ns = nil
	p.containers = nil
	p.shared = Shared{}
	if err != nil {
		return fmt.Errorf("tear down pod %s: %w", p.id, err)
	}
	return nil
}

// clone copies n without its references to adopted namespaces.
func (n *Namespaces) clone() Namespaces {
	return Namespaces{
		UserPath:    n.UserPath,
		NetPath:     n.NetPath,
		UIDMappings: slices.Clone(n.UIDMappings),
		GIDMappings: slices.Clone(n.GIDMappings),
		Owned:       n.Owned,
		Pins:        slices.Clone(n.Pins),
	}
}

// Forget removes a container from the state a dead shim left in dir, for
// `delete` after a crash. When no container of the pod remains, the pod's
// pins and state dir go and last is true. A missing dir or state is a pod
// with nothing left to remember (last); calling it again is harmless. It is
// meant for pods whose shim is gone: a live shim keeps its own account.
func Forget(dir, containerID string) (last bool, err error) {
	if err := checkDir(dir); err != nil {
		return false, err
	}
	unlock, err := lockDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer unlock()
	st, err := Load(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The shim died before it recorded a container: pins, if any, are
		// all in dir.
		return true, CleanupStateDir(dir)
	case err != nil:
		return false, fmt.Errorf("forget container %s: %w", containerID, err)
	}
	st.Containers = slices.DeleteFunc(st.Containers, func(c string) bool { return c == containerID })
	if len(st.Containers) > 0 {
		return false, Save(dir, st)
	}
	if err := errors.Join(st.Release(), CleanupStateDir(dir)); err != nil {
		return true, fmt.Errorf("forget pod %s: %w", st.ID, err)
	}
	return true, nil
}
