package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
)

// hangUpWait bounds how long an exiting shim waits for its clients to close
// their connections (see lifecycle.waitHangUp).
const hangUpWait = 3 * time.Second

// serve is the long-lived shim: it serves ttrpc on the socket start handed
// over as fd 3 until its services ask it to shut down.
func serve(ctx context.Context, h Handlers, cfg *Config) error {
	setupLogging(cfg.Debug)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	dropSIGPIPE()

	f := os.NewFile(3, "shim-socket")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("serve: socket on fd 3: %w", err)
	}
	sock := os.Getenv(socketEnv)
	os.Unsetenv(socketEnv)
	cfg.SocketPath = sock
	// The socket file this shim listens on, told apart from one a later shim
	// of the pod makes at the same path.
	var ownSocket unix.Stat_t
	if sock != "" {
		_ = unix.Lstat(sock, &ownSocket)
	}

	trim := newTrimmer()
	life := newLifecycle(sock, cfg.ID, trim.touch)
	srv, err := ttrpc.NewServer(
		ttrpc.WithUnaryServerInterceptor(func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (_ any, err error) {
			defer trim.touch()
			if slog.Default().Enabled(ctx, slog.LevelDebug) {
				start := time.Now()
				// goroutines: the count when the request ends (leak soaks read it).
				defer func() {
					slog.Debug("request", "method", info.FullMethod, "took", time.Since(start), "error", err, "goroutines", runtime.NumGoroutine())
				}()
			}
			// A bug in one request must not take the pod's other containers down.
			defer func() {
				if r := recover(); r != nil {
					slog.Error("request panicked", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
					err = fmt.Errorf("%s: internal error in %s: %v", info.FullMethod, Name, r)
				}
			}()
			return m(ctx, u)
		}),
	)
	if err != nil {
		return fmt.Errorf("new ttrpc server: %w", err)
	}
	pub := newPublisher(cfg.TTRPCAddress, cfg.Namespace)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	busy, err := h.Register(ctx, cfg, pub, srv, life.requestExit)
	if err != nil {
		return fmt.Errorf("register services: %w", err)
	}
	life.busy = busy
	life.register(srv)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	go func() {
		s := <-sigs
		slog.Info("shutting down on signal", "signal", s)
		life.forceExit()
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, &trackedListener{Listener: l, l: life}) }()
	slog.Debug("serving", "socket", sock)

	select {
	case <-life.exit:
	case err := <-serveErr:
		slog.Error("ttrpc server stopped", "error", err)
	}
	// No start may answer with this shim's address any more. An idle exit
	// removed the socket under the start lock, and the path may already be
	// a new shim's of the same pod: it is left alone. Otherwise (SIGTERM, or
	// the server stopped) it is removed here under the lock (held only for
	// spawns), if it is still this shim's.
	if sock != "" && !life.socketRemoved() {
		if unlock, err := lockSocket(sock); err != nil {
			slog.Warn("take the start lock to remove the socket", "error", err)
		} else {
			var now unix.Stat_t
			if unix.Lstat(sock, &now) == nil && now.Dev == ownSocket.Dev && now.Ino == ownSocket.Ino {
				removeSocket(sock)
			}
			unlock()
		}
	}

	// Let the reply to Shutdown go out (the client hangs up once it has it),
	// then stop serving, then deliver every event still queued.
	if !life.wasForced() {
		life.waitHangUp(hangUpWait)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		slog.Warn("ttrpc shutdown", "error", err)
	}
	scancel()
	pub.Close(10 * time.Second)
	return nil
}

// dropSIGPIPE keeps a write to a pipe or socket whose reader went (the log
// fifo included) from killing the shim: the write fails with EPIPE and the
// signal is caught and dropped. Not signal.Ignore: an ignored signal stays
// ignored across exec, so every child (binary:// loggers, the runtime) would
// start with SIGPIPE ignored, and a shell script cannot even trap it back. A
// caught signal is reset to its default by exec.
func dropSIGPIPE() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGPIPE)
	go func() {
		for range sigs {
		}
	}()
}

// setupLogging sends the shim's logs to the bundle's `log` fifo, which
// containerd reads and copies into its own log.
func setupLogging(debug bool) {
	// The shim starts in the bundle of the container that started it.
	if err := LogTo("."); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("runtime", RuntimeName, "pid", os.Getpid()))
}

// LogTo sends the shim's log (its stderr) to the log fifo of bundle, which
// containerd reads for as long as that bundle's container exists: a shim
// serving a pod moves to another container's fifo when the one it writes to
// goes with its container. fd 2 is replaced in one step, so no line is
// split between the two.
func LogTo(bundle string) error {
	path := filepath.Join(bundle, "log")
	// Non-blocking only to open: with no reader the open fails, not hangs.
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open shim log fifo %s: %w", path, err)
	}
	defer unix.Close(fd)
	// Blocking writes from here on: a slow reader must not lose lines.
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_NONBLOCK)
	}
	if err := unix.Dup3(fd, 2, 0); err != nil {
		return fmt.Errorf("log to %s: %w", path, err)
	}
	return nil
}
