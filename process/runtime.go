package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultRuntime is the OCI runtime binary used when options name none.
const DefaultRuntime = "runc"

// Runtime is an OCI runtime as a container's processes use it. Runc is the
// one implementation the shim runs; tests drive the task service with fakes.
type Runtime interface {
	Create(ctx context.Context, id string, o CreateOpts) error
	Start(ctx context.Context, id string) error
	// ReadyExec starts an exec ahead of its process spec (see PendingExec).
	ReadyExec(id string, o ExecOpts) (Pending, error)
	Exec(ctx context.Context, id string, spec *specs.Process, o ExecOpts) error
	Kill(ctx context.Context, id string, sig int, all bool) error
	Delete(ctx context.Context, id string, force bool) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Ps(ctx context.Context, id string) ([]int, error)
	Update(ctx context.Context, id string, resources *specs.LinuxResources) error
	Checkpoint(ctx context.Context, id string, o CheckpointOpts) error
}

// Pending is an exec readied ahead of its Start: Run hands over the process
// spec and returns once the process runs; Abort drops it, the container
// untouched. Run reports ErrPendingGone when the runtime ended without the
// spec: the caller runs a fresh exec.
type Pending interface {
	Run(spec *specs.Process) error
	Abort()
}

// Children starts, waits for and signals the shim's children without racing
// its one reaper. *Reaper is the shim's.
type Children interface {
	Start(cmd *exec.Cmd) error
	Wait(cmd *exec.Cmd) (int, error)
	Signal(pid int, sig syscall.Signal) error
}

// Runc is the one place that knows an OCI runtime's command line (runc and
// runc-compatible binaries).
type Runc struct {
	Binary        string // name on $PATH or absolute path
	Root          string // --root: the runtime's state directory
	SystemdCgroup bool
	Debug         bool
	LogPath       string // --log, JSON; the runtime's own error text is read back from it
	Children      Children
}

// Stdio is what the runtime passes on to the process it starts.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts are the options of `create`.
type CreateOpts struct {
	Bundle        string
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	NoNewKeyring  bool
	Stdio         Stdio
	ExtraFiles    []*os.File
}

// ExecOpts are the options of `exec --detach`.
type ExecOpts struct {
	PidFile       string
	ConsoleSocket string
	Stdio         Stdio
}

// Error is a failed runtime invocation, carrying the runtime's own words.
type Error struct {
	Op      string // create, start, exec, ...
	Message string // the runtime's last error message, or its output
	Err     error  // the exit or start failure
}

func (e *Error) Error() string {
	switch {
	case e.Message == "":
		return fmt.Sprintf("%s: %s", e.Op, e.Err)
	case strings.Contains(e.Message, e.Op):
		// runc says "runc create failed: ..." itself
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Op, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

func (r *Runc) binary() string {
	if r.Binary == "" {
		return DefaultRuntime
	}
	return r.Binary
}

func (r *Runc) globalArgs() []string {
	args := []string{}
	if r.Root != "" {
		args = append(args, "--root", r.Root)
	}
	if r.LogPath != "" {
		args = append(args, "--log", r.LogPath, "--log-format", "json")
	}
	if r.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if r.Debug {
		args = append(args, "--debug")
	}
	return args
}

func (r *Runc) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, lookPath(r.binary()), append(r.globalArgs(), args...)...)
	cmd.Env = os.Environ()
	// The runtime must not die with the shim's process group signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Never kill it half-way through on a cancelled request: a runtime killed
	// mid-create leaves state behind. Requests are bounded by the caller.
	cmd.Cancel = func() error { return nil }
	cmd.WaitDelay = 0
	return cmd
}

// run runs the runtime and returns its stdout; a failure carries the
// runtime's own error message.
func (r *Runc) run(cmd *exec.Cmd, op string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	call, err := r.start(cmd, op)
	if err != nil {
		return nil, err
	}
	if err := r.wait(call, &stdout, &stderr); err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}

// runtimeCall is one invocation of the runtime, started by start.
type runtimeCall struct {
	cmd       *exec.Cmd
	op        string
	logOffset int64 // where the runtime's log ended: wait reads only what this call logged
	started   time.Time
}

// start starts the runtime through the reaper.
func (r *Runc) start(cmd *exec.Cmd, op string) (*runtimeCall, error) {
	call := &runtimeCall{cmd: cmd, op: op, started: time.Now()}
	if r.LogPath != "" {
		if st, err := os.Stat(r.LogPath); err == nil {
			call.logOffset = st.Size()
		}
	}
	if err := r.Children.Start(cmd); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Op: op, Message: fmt.Sprintf("runtime binary %q: %v", r.binary(), err), Err: ErrRuntimeMissing}
		}
		return nil, &Error{Op: op, Err: err}
	}
	return call, nil
}

// wait waits for a runtime started by start; a non-zero exit becomes an
// Error with the runtime's last logged error, or else what it printed.
func (r *Runc) wait(call *runtimeCall, stdout, stderr *bytes.Buffer) error {
	op := call.op
	status, err := r.Children.Wait(call.cmd)
	slog.Debug("runtime", "op", op, "took", time.Since(call.started), "status", status)
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	if status == 0 {
		return nil
	}
	msg := r.lastLogError(call.logOffset)
	if msg == "" {
		msg = strings.TrimSpace(stderr.String())
	}
	if msg == "" {
		msg = strings.TrimSpace(stdout.String())
	}
	return &Error{Op: fmt.Sprintf("%s %s", filepath.Base(r.binary()), op), Message: msg, Err: fmt.Errorf("exit status %d", status)}
}

// lastLogError returns the last error message the runtime logged after offset.
func (r *Runc) lastLogError(offset int64) string {
	if r.LogPath == "" {
		return ""
	}
	f, err := os.Open(r.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return ""
	}
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			last = entry.Msg
		}
	}
	return last
}

// setStdio gives the runtime the process's stdio, and /dev/null for what the
// process has none of: the process inherits the runtime's stdio, so a pipe
// the shim reads the runtime's output from must never reach it (it would stay
// open as long as the container). The runtime's own words go to its log.
// The caller closes the returned file once the command has run.
func setStdio(cmd *exec.Cmd, s Stdio) (*os.File, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	pick := func(f *os.File) *os.File {
		if f != nil {
			return f
		}
		return null
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pick(s.Stdin), pick(s.Stdout), pick(s.Stderr)
	return null, nil
}

// Create runs `create`: the container's init is set up and waits for Start.
func (r *Runc) Create(ctx context.Context, id string, o CreateOpts) error {
	args := []string{"create", "--bundle", o.Bundle}
	if o.PidFile != "" {
		args = append(args, "--pid-file", o.PidFile)
	}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	if o.NoPivot {
		args = append(args, "--no-pivot")
	}
	if o.NoNewKeyring {
		args = append(args, "--no-new-keyring")
	}
	if n := len(o.ExtraFiles); n > 0 {
		args = append(args, "--preserve-fds", strconv.Itoa(n))
	}
	cmd := r.command(ctx, append(args, id)...)
	null, err := setStdio(cmd, o.Stdio)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd.ExtraFiles = o.ExtraFiles
	_, err = r.run(cmd, "create")
	return err
}

// Start runs `start`: the created init runs the user's process.
func (r *Runc) Start(ctx context.Context, id string) error {
	_, err := r.run(r.command(ctx, "start", id), "start")
	return err
}

// Exec runs `exec --detach`: the process is running when it returns. A
// runtime that fails before reading the spec (the container is paused, or
// gone) is not a readied exec gone stale: its failure is returned.
func (r *Runc) Exec(ctx context.Context, id string, spec *specs.Process, o ExecOpts) error {
	p, err := r.StartExec(id, o)
	if err != nil {
		return err
	}
	err = p.Run(spec)
	var gone *goneError
	if errors.As(err, &gone) {
		return gone.err
	}
	return err
}

// Kill sends sig to the container's init, or with all to every process of it.
func (r *Runc) Kill(ctx context.Context, id string, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(r.command(ctx, append(args, id, strconv.Itoa(sig))...), "kill")
	return err
}

// Delete removes the container's runtime state; force kills it first.
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(r.command(ctx, append(args, id)...), "delete")
	return err
}

// Pause freezes every process of the container.
func (r *Runc) Pause(ctx context.Context, id string) error {
	_, err := r.run(r.command(ctx, "pause", id), "pause")
	return err
}

// Resume thaws the container.
func (r *Runc) Resume(ctx context.Context, id string) error {
	_, err := r.run(r.command(ctx, "resume", id), "resume")
	return err
}

// Ps lists the pids of the container's processes.
func (r *Runc) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := r.run(r.command(ctx, "ps", "--format", "json", id), "ps")
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("parse %s ps output %q: %w", r.binary(), out, err)
	}
	return pids, nil
}

// Update applies new resource limits to the container.
func (r *Runc) Update(ctx context.Context, id string, resources *specs.LinuxResources) error {
	data, err := json.Marshal(resources)
	if err != nil {
		return fmt.Errorf("marshal resources: %w", err)
	}
	cmd := r.command(ctx, "update", "--resources", "-", id)
	cmd.Stdin = bytes.NewReader(data)
	_, err = r.run(cmd, "update")
	return err
}

// CheckpointOpts are the options of `checkpoint`.
type CheckpointOpts struct {
	ImagePath, WorkPath                                     string
	Exit, OpenTCP, ExternalUnixSockets, Terminal, FileLocks bool
	EmptyNamespaces                                         []string
}

// Checkpoint dumps the container with criu through the runtime.
func (r *Runc) Checkpoint(ctx context.Context, id string, o CheckpointOpts) error {
	args := []string{"checkpoint", "--image-path", o.ImagePath}
	if o.WorkPath != "" {
		args = append(args, "--work-path", o.WorkPath)
	}
	if !o.Exit {
		args = append(args, "--leave-running")
	}
	if o.OpenTCP {
		args = append(args, "--tcp-established")
	}
	if o.ExternalUnixSockets {
		args = append(args, "--ext-unix-sk")
	}
	if o.Terminal {
		args = append(args, "--shell-job")
	}
	if o.FileLocks {
		args = append(args, "--file-locks")
	}
	for _, ns := range o.EmptyNamespaces {
		args = append(args, "--empty-ns", ns)
	}
	_, err := r.run(r.command(ctx, append(args, id)...), "checkpoint")
	return err
}

// Features returns the runtime's `features` JSON.
func (r *Runc) Features(ctx context.Context) ([]byte, error) {
	return r.run(r.command(ctx, "features"), "features")
}

// Version returns the first line of the runtime's `--version`.
func (r *Runc) Version(ctx context.Context) (string, error) {
	out, err := r.run(exec.CommandContext(ctx, r.binary(), "--version"), "--version")
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// ReadPidFile reads the pid the runtime wrote.
func ReadPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read pid file %s: bad pid %q", path, data)
	}
	return pid, nil
}
