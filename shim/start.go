package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/wrapperspb"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// socketEnv tells the serving shim which socket file it owns.
const socketEnv = "CONTAINERD_SHIM_POD_V2_SOCKET"

// start finds or starts the pod's shim and answers containerd with its address.
func start(ctx context.Context, h Handlers, cfg *Config, stdin io.Reader, stdout io.Writer) error {
	var data []byte
	if stdin != nil {
		var err error
		if data, err = io.ReadAll(stdin); err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
	}
	in := parseStartInput(data, cfg.ID, cfg.Namespace)
	if p := in.params; p != nil {
		if p.SocketDir != nil && *p.SocketDir != "" {
			cfg.SocketDir = *p.SocketDir
		}
		if cfg.TTRPCAddress == "" {
			cfg.TTRPCAddress = p.ContainerdTtrpcAddress
		}
		if cfg.GRPCAddress == "" {
			cfg.GRPCAddress = p.ContainerdGrpcAddress
		}
	}
	annotations, err := readAnnotations(cfg.Bundle)
	if err != nil {
		return err
	}
	sock := SocketPath(cfg.SocketDir, cfg.GRPCAddress, cfg.Namespace, h.GroupKey(annotations, cfg.ID))
	address := unixScheme + sock

	if err := claim(sock, cfg.ID, func() error { return spawn(cfg, sock, in.options) }); err != nil {
		return err
	}
	if err := writeAddress(cfg.Bundle, address); err != nil {
		return err
	}
	if in.params != nil {
		out, err := bootstrapResult(address, bootstrapVersion())
		if err != nil {
			return fmt.Errorf("marshal bootstrap result: %w", err)
		}
		_, err = stdout.Write(out)
		return err
	}
	_, err = io.WriteString(stdout, address)
	return err
}

// writeAddress records the pod's address in the bundle's address file, which
// containerd 1.6 and 1.7 read back after a restart and `delete` reads to find
// the pod's shim. It is replaced in one step (a temporary file of its own in
// the bundle, renamed over it): a reader sees the old address or the new one,
// never an empty or half-written file that would make it forget a live pod.
func writeAddress(bundle, address string) (retErr error) {
	tmp, err := os.CreateTemp(bundle, ".address-*") // 0600, a name no other start uses
	if err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	defer func() {
		if retErr != nil {
			os.Remove(tmp.Name())
		}
	}()
	_, err = tmp.WriteString(address)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(bundle, "address")); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	return nil
}

// readAnnotations reads only the annotations of the bundle's config.json. A
// bundle without one (a sandbox) has none.
func readAnnotations(bundle string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open bundle spec: %w", err)
	}
	defer f.Close()
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(f).Decode(&spec); err != nil {
		return nil, fmt.Errorf("read annotations of %s: %w", f.Name(), err)
	}
	return spec.Annotations, nil
}

// spawn starts the serving shim: the listener goes to it as fd 3, in its own
// process group, with the bundle as working directory and no stdio, so that
// containerd's pipe on our stdout is not held open.
func spawn(cfg *Config, sock string, opts *anypb.Any) error {
	l, err := listen(sock)
	if err != nil {
		return err
	}
	f, err := l.File()
	l.Close()
	if err != nil {
		os.Remove(sock)
		return fmt.Errorf("listener file: %w", err)
	}
	defer f.Close()
	self, err := os.Executable()
	if err != nil {
		os.Remove(sock)
		return fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"-namespace", cfg.Namespace, "-id", cfg.ID, "-address", cfg.GRPCAddress}
	if cfg.PublishBinary != "" {
		args = append(args, "-publish-binary", cfg.PublishBinary)
	}
	if cfg.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cfg.Bundle
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(serveEnv(os.Environ()), socketEnv+"="+sock, "TTRPC_ADDRESS="+cfg.TTRPCAddress)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(sock)
		return fmt.Errorf("start shim: %w", err)
	}
	pid := cmd.Process.Pid
	if err := placeShim(pid, opts); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(sock)
		return err
	}
	return cmd.Process.Release()
}

// serveEnv is the serving shim's environment: the start's, with the Go
// runtime's memory profiling off (GODEBUG memprofilerate=0), which otherwise
// keeps a bucket per sampled allocation site for the life of the process,
// about 1.4 MB of a shim's memory. Nothing reads those profiles.
func serveEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	godebug := "memprofilerate=0"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GODEBUG="); ok {
			if v != "" {
				godebug = v + "," + godebug
			}
			continue
		}
		out = append(out, e)
	}
	return append(out, "GODEBUG="+godebug)
}

// placeShim moves the new shim into the cgroup the options name and makes it
// slightly more killable than containerd itself.
func placeShim(pid int, opts *anypb.Any) error {
	if opts != nil && typeName(opts.GetTypeUrl()) == "containerd.runc.v1.Options" {
		var o options.Options
		if err := wire.Unmarshal(opts.GetValue(), &o); err != nil {
			return fmt.Errorf("decode runtime options: %w", err)
		}
		if o.ShimCgroup != "" {
			if err := joinCgroup(pid, o.ShimCgroup); err != nil {
				return fmt.Errorf("move shim to cgroup %s: %w", o.ShimCgroup, err)
			}
		}
	}
	return adjustOOMScore(pid, os.Getppid())
}

// adjustOOMScore sets the shim's oom_score_adj to containerd's + 1. It only
// raises the score: lowering it needs CAP_SYS_RESOURCE, which may be missing.
func adjustOOMScore(pid, parent int) error {
	read := func(p int) (int, error) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", p))
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(data)))
	}
	base, err := read(parent)
	if err != nil {
		return nil // containerd's score is unknown: leave ours
	}
	cur, err := read(pid)
	if err != nil {
		return fmt.Errorf("read oom score of shim: %w", err)
	}
	want := min(base+1, 1000)
	if want <= cur {
		return nil
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(want)), 0); err != nil {
		return fmt.Errorf("set oom score of shim: %w", err)
	}
	return nil
}

// joinCgroup writes pid into the cgroup at path, on cgroup v2 or in every v1 hierarchy.
func joinCgroup(pid int, path string) error {
	const root = "/sys/fs/cgroup"
	procs := []byte(strconv.Itoa(pid))
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return os.WriteFile(filepath.Join(root, filepath.Clean("/"+path), "cgroup.procs"), procs, 0)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	joined := 0
	for _, e := range entries {
		target := filepath.Join(root, e.Name(), filepath.Clean("/"+path), "cgroup.procs")
		if _, err := os.Stat(target); err != nil {
			continue
		}
		if err := os.WriteFile(target, procs, 0); err != nil {
			return err
		}
		joined++
	}
	if joined == 0 {
		return fmt.Errorf("no cgroup hierarchy has %s", path)
	}
	return nil
}

// reserveWait bounds how long start waits for an answer from a pod's shim
// that may be alive but does not answer (see dialShim).
const reserveWait = 5 * time.Second

// claim makes sure a shim serves the pod on sock for the container taskID
// being started: a live shim of the pod is reserved for it before it is
// named, so that it cannot decide to exit meanwhile (see lifecycle); if none
// serves the pod, one is spawned. The start lock is taken only to decide
// that none does and to spawn it: a shim that may be busy is asked again
// for up to reserveWait without it, so that a slow pod's shim never holds
// up the starts of the others. An error: a shim may serve the pod but did
// not answer within reserveWait; start fails rather than put a second shim
// on its socket.
func claim(sock, taskID string, spawn func() error) error {
	deadline := time.Now().Add(reserveWait)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		st, err := reserve(sock, taskID)
		switch st {
		case shimUp:
			return nil
		case shimGone:
			spawned, err := spawnIfNone(sock, spawn)
			if err != nil || spawned {
				return err
			}
			// A shim came meanwhile: it is asked again.
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pod's shim on %s does not answer (%v): not starting a second one", sock, err)
		}
		slog.Debug("the pod's shim may be busy: asking again", "socket", sock, "error", err)
		time.Sleep(delay)
	}
}

// spawnIfNone spawns the pod's shim under the start lock if, looked at
// again under it, no shim serves the pod. false, nil: one does now.
func spawnIfNone(sock string, spawn func() error) (bool, error) {
	unlock, err := lockSocket(sock)
	if err != nil {
		return false, err
	}
	defer unlock()
	if probeShim(sock) != shimGone {
		return false, nil
	}
	return true, spawn()
}

// reserve asks the pod's shim once. A shim that is exiting (signalled)
// answers with an error and removes its socket: asked again, it is gone.
func reserve(sock, taskID string) (shimState, error) {
	conn, st, err := dialShim(sock)
	if st != shimUp {
		return st, err
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = c.Call(ctx, lifecycleService, "Reserve", wire.Message(&wrapperspb.StringValue{Value: taskID}), wire.Message(&emptypb.Empty{}))
	if err == nil || status.Code(err) == codes.Unimplemented {
		return shimUp, nil // Unimplemented: a shim of an earlier version, alive as before
	}
	return shimUnsure, err
}
