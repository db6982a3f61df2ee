package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	apitypes "github.com/containerd/containerd/api/types"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// shimBinary is the binary of runtime R for direct invocations: ours, or for the reference runtime containerd 2.4's
// containerd-shim-runc-v2 (Debian's 1.6 one has no -info).
func shimBinary(t *testing.T, runtime string) string {
	if harness.IsOurs(runtime) {
		return harness.ShimPath(t)
	}
	return filepath.Join(harness.AllFlavours()[1].BinDir, harness.ShimBinaryName(runtime))
}

func runShim(t *testing.T, bin string, stdin []byte, args ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout %q\nstderr %q", bin, args, err, out.String(), errb.String())
	}
	return out.Bytes(), errb.Bytes()
}

// `containerd-shim-pod-v2 -v` prints a version; `-info` with an empty stdin, and with runc options on stdin, prints a
// RuntimeInfo proto naming the runtime, whose features are the OCI runtime's features JSON.
func TestShimVersionInfo(t *testing.T) {
	runtime := harness.Runtime()
	bin := shimBinary(t, runtime)

	out, _ := runShim(t, bin, nil, "-v")
	if !regexp.MustCompile(`(?i)version|\d+\.\d+`).Match(out) {
		t.Errorf("-v printed no version: %q", out)
	}
	t.Logf("%s -v: %s", filepath.Base(bin), bytes.TrimSpace(out))

	opts, err := proto.Marshal(&runcoptions.Options{BinaryName: "/usr/sbin/runc"})
	if err != nil {
		t.Fatal(err)
	}
	anyOpts, err := proto.Marshal(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: opts})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []struct {
		name  string
		stdin []byte
	}{{"empty stdin", nil}, {"runc options on stdin", anyOpts}} {
		out, _ := runShim(t, bin, in.stdin, "-info")
		var info apitypes.RuntimeInfo
		if err := proto.Unmarshal(out, &info); err != nil {
			t.Fatalf("-info (%s): not a RuntimeInfo: %v: %q", in.name, err, out)
		}
		if info.Name != runtime {
			t.Errorf("-info (%s): name %q, want %q", in.name, info.Name, runtime)
		}
		if info.GetVersion().GetVersion() == "" {
			t.Errorf("-info (%s): no version: %v", in.name, info.GetVersion())
		}
		if info.Features == nil {
			t.Fatalf("-info (%s): no features", in.name)
		}
		if want := "types.containerd.io/opencontainers/runtime-spec/1/features/Features"; info.Features.TypeUrl != want {
			t.Errorf("-info (%s): features type %q, want %q", in.name, info.Features.TypeUrl, want)
		}
		var f features.Features
		if err := json.Unmarshal(info.Features.Value, &f); err != nil {
			t.Fatalf("-info (%s): features are not JSON: %v: %q", in.name, err, info.Features.Value)
		}
		if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
			t.Errorf("-info (%s): features without ociVersionMin/Max: %s", in.name, info.Features.Value)
		}
		if len(f.MountOptions) == 0 {
			t.Errorf("-info (%s): features list no mountOptions", in.name)
		}
		t.Logf("-info (%s): name %s, version %v, ociVersion %s..%s, rro %v, %d mount options, annotations %v",
			in.name, info.Name, info.GetVersion(), f.OCIVersionMin, f.OCIVersionMax, slices.Contains(f.MountOptions, "rro"),
			len(f.MountOptions), info.Annotations)
	}
}

// The shim at the ttrpc level, started by the test the way each containerd starts it (1.6: nothing on stdin, a plain
// or JSON address back; 2.4: BootstrapParams in, BootstrapResult out) with a bundle of the test's own, so that
// requests containerd would never send reach it: invalid container ids (containerd refuses those first, see
// TestInvalidIDs) and unknown ids. Then a whole life through the raw task API: Create, State, Start, Wait, Delete,
// Shutdown, with the events the shim itself publishes to containerd (which forwards them to `ctr events`).
func TestShimTTRPC(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		bin := filepath.Join(c.Flavour.BinDir, harness.ShimBinaryName(c.Runtime))
		if harness.IsOurs(c.Runtime) {
			bin = harness.ShimPath(t)
		}
		ev := c.Events(t)
		id := c.ID("direct")
		b := c.NewDirectBundle(t, id, []string{"sh", "-c", "echo direct; echo err >&2; exit 7"}, nil)
		s := c.StartShimDirect(t, bin, b)
		if want := c.ShimSocketAddress(id); s.Address != want {
			t.Errorf("start answered %q, want %q", s.Address, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		conn, err := s.Task.Connect(ctx, &taskapi.ConnectRequest{ID: id})
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		shims := c.ShimProcesses(c.Runtime, id)
		if len(shims) != 1 || uint32(shims[0].PID) != conn.ShimPid {
			t.Errorf("Connect says shim pid %d; shim processes %v", conn.ShimPid, shims)
		}
		// Ours serves the task API under both names, whichever containerd calls.
		if harness.IsOurs(c.Runtime) {
			for _, svc := range []string{harness.TaskServiceV2, harness.TaskServiceV3} {
				tc := &harness.TaskClient{Client: s.Client, Service: svc}
				if r, err := tc.Connect(ctx, &taskapi.ConnectRequest{ID: id}); err != nil || r.ShimPid != conn.ShimPid {
					t.Errorf("Connect through %s: %v (err %v)", svc, r, err)
				}
			}
		}

		// Unknown id: NotFound.
		_, err = s.Task.State(ctx, &taskapi.StateRequest{ID: "no-such-container"})
		if err == nil || !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Errorf("State of an unknown id: want NotFound, got %v", err)
		}

		// Invalid ids: refused (ours: InvalidArgument), nothing mounted or left in runc.
		for _, bad := range []string{"../evil", "a/b", "..", ""} {
			_, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: bad, Bundle: b.Path, Rootfs: b.Rootfs})
			if err == nil {
				t.Errorf("Create with id %q succeeded", bad)
				continue
			}
			if harness.IsOurs(c.Runtime) && !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
				t.Errorf("Create with id %q: want InvalidArgument, got %v", bad, err)
			}
			t.Logf("Create with id %q: %v", bad, err)
			if m := harness.MountsUnder(filepath.Join(b.Path, "rootfs")); len(m) != 0 {
				t.Errorf("Create with id %q left mounts: %v", bad, m)
			}
		}

		// A whole life.
		cr, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs, Stdout: b.Stdout, Stderr: b.Stderr})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		st, err := s.Task.State(ctx, &taskapi.StateRequest{ID: id})
		if err != nil || st.Status != task.Status_CREATED || st.Pid != cr.Pid || st.Bundle != b.Path {
			t.Errorf("State after Create: %v (err %v), want CREATED pid %d bundle %s", st, err, cr.Pid, b.Path)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		wr, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		if err != nil || wr.ExitStatus != 7 {
			t.Fatalf("Wait: %v (err %v), want exit 7", wr, err)
		}
		st, err = s.Task.State(ctx, &taskapi.StateRequest{ID: id})
		if err != nil || st.Status != task.Status_STOPPED || st.ExitStatus != 7 {
			t.Errorf("State after exit: %v (err %v)", st, err)
		}
		dr, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		if err != nil || dr.ExitStatus != 7 || dr.Pid != cr.Pid {
			t.Errorf("Delete: %v (err %v), want exit 7 pid %d", dr, err, cr.Pid)
		}
		if !b.WaitIO(10 * time.Second) {
			t.Errorf("stdout/stderr fifos still open 10 s after Delete")
		}
		if b.Out.String() != "direct\n" || b.Err.String() != "err\n" {
			t.Errorf("stdout %q stderr %q", b.Out.String(), b.Err.String())
		}
		if _, err := s.Task.State(ctx, &taskapi.StateRequest{ID: id}); err == nil || !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Errorf("State after Delete: want NotFound, got %v", err)
		}

		// The shim's own events, as containerd forwards them.
		ev.MustWaitFor(t, 10*time.Second, "/tasks/delete of "+id, func(e harness.Event) bool {
			return e.Topic == "/tasks/delete" && e.Str("container_id") == id
		})
		time.Sleep(300 * time.Millisecond)
		checkTaskEventOrder(t, c, ev, id)

		// Shutdown: the shim exits and removes its socket.
		_ = s.Task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id}) // the connection may drop with the process
		harness.Eventually(t, 10*time.Second, "the shim exits after Shutdown", func() bool {
			return len(c.ShimProcesses(c.Runtime, id)) == 0
		})
		sock := strings.TrimPrefix(s.Address, "unix://")
		harness.Eventually(t, 5*time.Second, "the shim's socket is removed", func() bool { return !harness.Exists(sock) })
		if harness.Exists(c.RuncStateDir(id)) || len(harness.MountsUnder(b.Path)) != 0 {
			t.Errorf("left: runc state %v, mounts %v", harness.Exists(c.RuncStateDir(id)), harness.MountsUnder(b.Path))
		}
	})
}
