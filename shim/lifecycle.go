package shim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/wrapperspb"
	"golang.org/x/sys/unix"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// reservationTTL bounds how long a start's reservation keeps a shim alive
// when no connection comes to take it (containerd died after `start`). A
// variable only for tests.
var reservationTTL = 30 * time.Second

// lifecycle decides when a serving shim exits, so that `start` never
// answers with the address of a shim that is about to go.
//
// `start` finds a pod's shim alive and reserves it for the task it starts
// (Reserve, over the socket) while it holds the start lock; the shim decides
// to exit, and removes its socket, only while holding that same lock. So
// either the reservation comes first and the shim stays, or the socket is
// gone first and `start` spawns a new shim. A reservation lasts until
// containerd shuts that task down (task Shutdown names it: containerd sends
// it after the task's Delete, and after a failed Create), or reservationTTL
// passes; while the task's container exists the services are busy anyway.
//
// The shim exits when its services hold nothing (no container, no sandbox),
// no reservation is pending, and either the services asked for it (task
// Shutdown) or no client is connected any more (containerd gave up on it,
// or never came).
type lifecycle struct {
	sock string      // the socket file; "" in tests without one
	busy func() bool // the services hold something
	// woke is told when the shim did work outside of a request (a check
	// of its reservations or connections), which faults in pages the
	// trimmer had dropped: it trims again once quiet (nil in tests).
	woke func()

	// mu guards everything below.
	mu       sync.Mutex
	reserved map[string]*reservation // by task id
	conns    int                     // open connections
	// noConns is closed while conns is 0, and replaced when a connection
	// comes.
	noConns chan struct{}
	wanted  bool // the services asked to exit
	forced  bool // SIGTERM: exit now
	decided bool
	// unlisted: check removed the socket under the start lock; from then on
	// the path may be another shim's of the same pod.
	unlisted bool
	exit     chan struct{} // closed once the shim is to exit
}

// reservation is one start's hold on the shim, until its task is shut down
// or it expires.
type reservation struct {
	until time.Time
	timer *time.Timer // checks the shim once it expires; stopped when released
}

func newLifecycle(sock, taskID string, woke func()) *lifecycle {
	l := &lifecycle{sock: sock, busy: func() bool { return false }, woke: woke, reserved: map[string]*reservation{},
		exit: make(chan struct{}), noConns: make(chan struct{})}
	close(l.noConns)
	// The shim `start` spawns is reserved for the task that started it.
	l.reserve(taskID)
	return l
}

// reserve is what `start` asks of a live shim it is about to answer with.
func (l *lifecycle) reserve(taskID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.decided {
		return false
	}
	l.releaseLocked(taskID)
	l.reserved[taskID] = &reservation{until: time.Now().Add(reservationTTL), timer: time.AfterFunc(reservationTTL, l.check)}
	return true
}

// releaseLocked ends a reservation, and its timer: an idle shim is not
// woken for a reservation that is over.
func (l *lifecycle) releaseLocked(taskID string) {
	if r := l.reserved[taskID]; r != nil {
		r.timer.Stop()
		delete(l.reserved, taskID)
	}
}

// requestExit is the services' wish to exit once idle, on containerd's
// Shutdown of a task: that task's reservation is over.
func (l *lifecycle) requestExit(taskID string) {
	l.mu.Lock()
	slog.Debug("exit asked", "task", taskID)
	l.wanted = true
	l.releaseLocked(taskID)
	l.mu.Unlock()
	go l.check()
}

// accepted notes a new connection.
func (l *lifecycle) accepted() {
	l.mu.Lock()
	if l.conns == 0 {
		l.noConns = make(chan struct{})
	}
	l.conns++
	l.mu.Unlock()
}

// closed notes a connection's end.
func (l *lifecycle) closed() {
	l.mu.Lock()
	l.conns--
	if l.conns == 0 {
		close(l.noConns)
	}
	l.mu.Unlock()
	go l.check()
}

// waitHangUp waits, at most timeout, until every client has closed its
// connection. The ttrpc server counts a connection idle until its loop next
// wakes, so shutting it down right after a handler returned can close the
// connection before the reply is written: containerd closes its
// connections once it has the reply to task Shutdown or ShutdownSandbox
// (and fails a ShutdownSandbox whose reply it does not get).
func (l *lifecycle) waitHangUp(timeout time.Duration) {
	l.mu.Lock()
	ch := l.noConns
	l.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
		slog.Debug("clients still connected at exit", "waited", timeout)
	}
}

// idleLocked says whether the shim may exit now.
func (l *lifecycle) idleLocked() bool {
	now := time.Now()
	for id, r := range l.reserved {
		if !now.Before(r.until) {
			delete(l.reserved, id)
		}
	}
	return !l.decided && len(l.reserved) == 0 && (l.wanted || l.conns == 0) && !l.busy()
}

// check exits the shim if it is idle, deciding under the start lock and
// removing the socket before letting go of it.
func (l *lifecycle) check() {
	if l.woke != nil {
		defer l.woke()
	}
	l.mu.Lock()
	idle := l.idleLocked()
	if !idle && !l.decided {
		slog.Debug("staying", "reserved for", slices.Sorted(maps.Keys(l.reserved)), "connections", l.conns, "exit asked", l.wanted)
	}
	l.mu.Unlock()
	if !idle {
		return
	}
	unlock := func() {}
	if l.sock != "" {
		u, err := lockSocket(l.sock)
		if err != nil {
			slog.Error("take the start lock to exit", "error", err)
			return
		}
		unlock = u
	}
	defer unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.idleLocked() {
		return
	}
	l.decided = true
	if l.sock != "" {
		removeSocket(l.sock)
		l.unlisted = true
	}
	close(l.exit)
}

// socketRemoved tells whether check removed the socket: if not (SIGTERM, or
// the server stopped), the shim removes it on its way out.
func (l *lifecycle) socketRemoved() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unlisted
}

// forceExit ends the shim whatever it holds (SIGTERM).
func (l *lifecycle) forceExit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forced = true
	if !l.decided {
		l.decided = true
		close(l.exit)
	}
}

// wasForced tells whether the shim exits on SIGTERM rather than idle.
func (l *lifecycle) wasForced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.forced
}

// lifecycleService is the shim's own ttrpc service, for `start`.
const lifecycleService = "containerd.shim.pod.v2.Lifecycle"

func (l *lifecycle) register(srv *ttrpc.Server) {
	srv.RegisterService(lifecycleService, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		// The request holds the task id.
		"Reserve": wire.Method(func(ctx context.Context, req *wrapperspb.StringValue) (*emptypb.Empty, error) {
			if !l.reserve(req.GetValue()) {
				return nil, errExiting
			}
			return &emptypb.Empty{}, nil
		}),
	}})
}

// trackedListener tells the lifecycle of every connection, and lets only
// clients of the shim's own user and group in (SO_PEERCRED).
type trackedListener struct {
	net.Listener
	l *lifecycle
}

func (t *trackedListener) Accept() (net.Conn, error) {
	uid, gid := uint32(unix.Geteuid()), uint32(unix.Getegid())
	for {
		conn, err := t.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := checkPeer(conn, uid, gid); err != nil {
			slog.Warn("connection refused", "error", err)
			conn.Close()
			continue
		}
		t.l.accepted()
		return &trackedConn{Conn: conn, l: t.l}, nil
	}
}

// checkPeer refuses a peer that is not of the shim's user and group.
func checkPeer(conn net.Conn, uid, gid uint32) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errNotUnix
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if cred.Uid != uid || cred.Gid != gid {
		return &peerError{pid: cred.Pid, uid: cred.Uid, gid: cred.Gid}
	}
	return nil
}

type trackedConn struct {
	net.Conn
	l    *lifecycle
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.closed)
	return err
}

var (
	errExiting = errors.New("the shim is exiting")
	errNotUnix = errors.New("not a unix socket connection")
)

type peerError struct {
	pid      int32
	uid, gid uint32
}

func (e *peerError) Error() string {
	return fmt.Sprintf("peer pid %d runs as %d:%d, not as the shim's user and group", e.pid, e.uid, e.gid)
}
