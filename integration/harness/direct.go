package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/podv2/containerd-shim-pod-v2/integration/image"
)

// Buffer is a bytes.Buffer safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// DirectBundle is a bundle made by the test itself, for a shim it starts itself (no containerd task behind it).
type DirectBundle struct {
	ID     string
	Path   string         // the bundle: config.json, log fifo
	Rootfs []*types.Mount // a bind mount of an extracted copy of the busybox image
	Log    *Buffer        // what the shim wrote to the bundle's log fifo
	Stdout string         // fifo paths for Create
	Stderr string
	Out    *Buffer // what arrived on them
	Err    *Buffer
	outWG  sync.WaitGroup
}

// WaitIO waits (at most timeout) until the shim closed the stdout and stderr fifos.
func (b *DirectBundle) WaitIO(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { b.outWG.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Spec reads the bundle's config.json.
func (b *DirectBundle) Spec(t testing.TB) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Path, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	return &spec
}

// SetSpec writes the bundle's config.json.
func (b *DirectBundle) SetSpec(t testing.TB, spec *specs.Spec) {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Path, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// NewDirectBundle prepares a bundle under Dir for a container id running args: config.json from containerd's default
// spec (cgroup /<namespace>/<id>, root "rootfs"), an extracted copy of the image as the rootfs source, a `log` fifo
// read by the test (containerd makes it, and shims open it), and stdout/stderr fifos read by the test.
func (c *Containerd) NewDirectBundle(t testing.TB, id string, args []string, annotations map[string]string) *DirectBundle {
	t.Helper()
	b := &DirectBundle{ID: id, Path: filepath.Join(c.Dir, "direct", id), Log: &Buffer{}, Out: &Buffer{}, Err: &Buffer{}}
	src := filepath.Join(c.Dir, "direct", id+"-rootfs")
	for _, d := range []string{b.Path, src, filepath.Join(b.Path, "rootfs")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := ExtractImage(src); err != nil {
		t.Fatalf("extracting the image: %v", err)
	}
	b.Rootfs = []*types.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}}

	ctx := namespaces.WithNamespace(context.Background(), c.Namespace)
	opts := []oci.SpecOpts{oci.WithProcessArgs(args...), oci.WithRootFSPath("rootfs"), oci.WithDefaultPathEnv}
	if len(annotations) > 0 {
		opts = append(opts, oci.WithAnnotations(annotations))
	}
	spec, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		t.Fatalf("GenerateSpec: %v", err)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Path, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}

	// The log fifo is opened read-write, at once, as containerd opens it:
	// the shim opens it without blocking, which fails unless a reader is
	// there already (a reader opened in the background may come too late),
	// and it is read for as long as the test runs. The outputs are read
	// until the shim's last writer closes them.
	openRead := func(p string, into io.Writer, wg *sync.WaitGroup) {
		flag := syscall.O_RDONLY | syscall.O_CREAT | syscall.O_NONBLOCK
		if wg == nil {
			flag = syscall.O_RDWR | syscall.O_CREAT
		}
		f, err := fifo.OpenFifo(context.Background(), p, flag, 0o700)
		if err != nil {
			t.Fatalf("fifo %s: %v", p, err)
		}
		if wg != nil {
			wg.Add(1)
		}
		go func() {
			_, _ = io.Copy(into, f)
			f.Close()
			if wg != nil {
				wg.Done()
			}
		}()
		t.Cleanup(func() { f.Close() })
	}
	openRead(filepath.Join(b.Path, "log"), b.Log, nil)
	b.Stdout = filepath.Join(c.FifoDir, id+"-stdout")
	b.Stderr = filepath.Join(c.FifoDir, id+"-stderr")
	openRead(b.Stdout, b.Out, &b.outWG)
	openRead(b.Stderr, b.Err, &b.outWG)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log fifo of the directly started shim %s:\n%s", id, b.Log.String())
		}
	})
	return b
}

// ExtractImage writes the busybox image's layers (see package image) into dir.
func ExtractImage(dir string) error {
	applets, err := image.Applets(image.DefaultBusybox)
	if err != nil {
		return err
	}
	layers, err := image.Layers(image.DefaultBusybox, applets)
	if err != nil {
		return err
	}
	for _, l := range layers {
		tr := tar.NewReader(bytes.NewReader(l))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			p := filepath.Join(dir, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()); err != nil {
					return err
				}
				_ = os.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode))
			case tar.TypeReg:
				f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm())
				if err != nil {
					return err
				}
				if _, err := io.Copy(f, tr); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			case tar.TypeSymlink:
				os.Remove(p)
				if err := os.Symlink(h.Linkname, p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// Task service names: containerd 1.6 and 1.7 talk v2, 2.x v3 (the same messages). The reference shim of 2.4 serves
// only v3, Debian's 1.6 one only v2; ours serves both.
const (
	TaskServiceV2 = "containerd.task.v2.Task"
	TaskServiceV3 = "containerd.task.v3.Task"
)

// TaskClient calls the task service of a shim under a given service name (v2 or v3) with the v2 messages, which are
// wire-identical to v3's.
type TaskClient struct {
	Client  *ttrpc.Client
	Service string
}

func (c *TaskClient) call(ctx context.Context, method string, req, resp any) error {
	return c.Client.Call(ctx, c.Service, method, req, resp)
}

// Connect calls Connect.
func (c *TaskClient) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	var resp taskapi.ConnectResponse
	return &resp, c.call(ctx, "Connect", r, &resp)
}

// Create calls Create.
func (c *TaskClient) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	var resp taskapi.CreateTaskResponse
	return &resp, c.call(ctx, "Create", r, &resp)
}

// State calls State.
func (c *TaskClient) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	var resp taskapi.StateResponse
	return &resp, c.call(ctx, "State", r, &resp)
}

// Start calls Start.
func (c *TaskClient) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	var resp taskapi.StartResponse
	return &resp, c.call(ctx, "Start", r, &resp)
}

// Wait calls Wait.
func (c *TaskClient) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	var resp taskapi.WaitResponse
	return &resp, c.call(ctx, "Wait", r, &resp)
}

// Kill calls Kill.
func (c *TaskClient) Kill(ctx context.Context, r *taskapi.KillRequest) error {
	var resp emptypb.Empty
	return c.call(ctx, "Kill", r, &resp)
}

// Delete calls Delete.
func (c *TaskClient) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	var resp taskapi.DeleteResponse
	return &resp, c.call(ctx, "Delete", r, &resp)
}

// Exec calls Exec.
func (c *TaskClient) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) error {
	var resp emptypb.Empty
	return c.call(ctx, "Exec", r, &resp)
}

// Pause calls Pause.
func (c *TaskClient) Pause(ctx context.Context, r *taskapi.PauseRequest) error {
	var resp emptypb.Empty
	return c.call(ctx, "Pause", r, &resp)
}

// Resume calls Resume.
func (c *TaskClient) Resume(ctx context.Context, r *taskapi.ResumeRequest) error {
	var resp emptypb.Empty
	return c.call(ctx, "Resume", r, &resp)
}

// Shutdown calls Shutdown.
func (c *TaskClient) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) error {
	var resp emptypb.Empty
	return c.call(ctx, "Shutdown", r, &resp)
}

// DirectShim is a shim started by the test the way containerd starts one.
type DirectShim struct {
	Address string // as the shim answered `start`
	Answer  []byte // its raw answer
	Client  *ttrpc.Client
	Task    *TaskClient // under the service name this flavour of containerd uses
}

// StartShimDirect runs `<bin> -namespace NS -address A -publish-binary CONTAINERD -id ID start` in the bundle, the
// way this flavour of containerd does (1.6: options Any or nothing on stdin, plain address or JSON answer; 2.4:
// BootstrapParams on stdin, BootstrapResult answer), and connects a ttrpc task client to the address it answers.
func (c *Containerd) StartShimDirect(t testing.TB, bin string, b *DirectBundle) *DirectShim {
	t.Helper()
	return c.StartShimDirectEnv(t, bin, b, nil)
}

// StartShimDirectEnv is StartShimDirect with env added to the shim's
// environment, as containerd's own environment would be (e.g. the shim's
// fault points, CONTAINERD_SHIM_POD_V2_FAULTS).
func (c *Containerd) StartShimDirectEnv(t testing.TB, bin string, b *DirectBundle, env []string) *DirectShim {
	t.Helper()
	cmd := exec.Command(bin, "-namespace", c.Namespace, "-address", c.Address, "-publish-binary", c.Flavour.Containerd, "-id", b.ID, "start")
	cmd.Dir = b.Path
	cmd.Env = append(filterEnv(os.Environ(), "PATH", "TTRPC_ADDRESS", "GRPC_ADDRESS", "NAMESPACE", "MAX_SHIM_VERSION"),
		"PATH="+c.PATH, "TTRPC_ADDRESS="+c.TTRPCAddress, "GRPC_ADDRESS="+c.Address, "NAMESPACE="+c.Namespace, "MAX_SHIM_VERSION=2",
		SettingsEnv+"="+c.SettingsPath())
	cmd.Env = append(cmd.Env, env...)
	if !c.Flavour.Is16() {
		params, err := proto.Marshal(&bootapi.BootstrapParams{
			InstanceID: b.ID, Namespace: c.Namespace, ContainerdVersion: "2.4.2",
			ContainerdTtrpcAddress: c.TTRPCAddress, ContainerdGrpcAddress: c.Address, ContainerdBinary: c.Flavour.Containerd,
		})
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(params)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s start: %v", bin, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s start: %v: %q", bin, err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s start did not return within 20 s (a child holding its stdout?): %q", bin, out.String())
	}
	s := &DirectShim{Answer: out.Bytes()}
	var err error
	s.Address, err = ParseStartAnswer(out.Bytes())
	if err != nil {
		t.Fatalf("%s start answered %q: %v", bin, out.String(), err)
	}
	conn, err := net.DialTimeout("unix", strings.TrimPrefix(s.Address, "unix://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Address, err)
	}
	s.Client = ttrpc.NewClient(conn)
	t.Cleanup(func() { s.Client.Close() })
	s.Task = &TaskClient{Client: s.Client, Service: TaskServiceV3}
	if c.Flavour.Is16() {
		s.Task.Service = TaskServiceV2
	}
	return s
}

// ParseStartAnswer reads a shim's answer to `start`: a plain address, JSON {"version":2,"address":..}, or a binary
// BootstrapResult (containerd 2.3+).
func ParseStartAnswer(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(s, "unix://") || strings.HasPrefix(s, "/"):
		if strings.ContainsAny(s, "\n ") {
			return "", fmt.Errorf("more than an address")
		}
		return s, nil
	case strings.HasPrefix(s, "{"):
		var v struct {
			Version  int    `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return "", err
		}
		return v.Address, nil
	}
	var r bootapi.BootstrapResult
	if err := proto.Unmarshal(b, &r); err != nil || r.Address == "" {
		return "", fmt.Errorf("neither an address, JSON nor a BootstrapResult (%v)", err)
	}
	return r.Address, nil
}
