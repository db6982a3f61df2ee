package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// setNetnsPath rewrites the bundle's spec to join the network namespace at path ("" = a new one).
func setNetnsPath(t *testing.T, b *harness.DirectBundle, path string) {
	t.Helper()
	file := filepath.Join(b.Path, "config.json")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	found := false
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = path
			found = true
		}
	}
	if !found {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
	}
	if data, err = json.Marshal(&spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A spec whose network namespace path names a fifo (anything may be at a path a client hands over) is refused at
// once with InvalidArgument naming the path; the shim is not stuck opening it (a plain open waits for a writer
// forever, under the pod's lock) and serves on: the same container with a sound spec is then created and runs.
func TestNetnsPathNamingAFifoIsRefused(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("adopting namespace paths is this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		id := c.ID("fifo-netns")
		b := c.NewDirectBundle(t, id, []string{"echo", "served"}, nil)
		fifo := filepath.Join(c.Dir, "not-a-netns")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		// Whatever happens, nothing stays blocked on the fifo: a writer comes along at the end.
		t.Cleanup(func() {
			if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				syscall.Close(fd)
			}
		})
		setNetnsPath(t, b, fifo)
		s := c.StartShimDirect(t, harness.ShimPath(t), b)

		create := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: b.Rootfs, Stdout: b.Stdout, Stderr: b.Stderr})
			return err
		}
		err := create()
		if err == nil || !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), fifo) {
			t.Errorf("Create with a fifo as network namespace: %v\nwant InvalidArgument naming %s", err, fifo)
		} else {
			t.Logf("refused: %v", err)
		}
		if m := harness.MountsUnder(filepath.Join(b.Path, "rootfs")); len(m) != 0 {
			t.Errorf("the refused Create left mounts: %v", m)
		}

		// The shim serves on.
		setNetnsPath(t, b, "")
		if err := create(); err != nil {
			t.Fatalf("Create with a sound spec after the refused one: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if wr, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id}); err != nil || wr.ExitStatus != 0 {
			t.Errorf("Wait: %v (err %v)", wr, err)
		}
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Errorf("Delete: %v", err)
		}
		if !b.WaitIO(10*time.Second) || b.Out.String() != "served\n" {
			t.Errorf("stdout %q", b.Out.String())
		}
		_ = s.Task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
		harness.Eventually(t, 10*time.Second, "the shim exits after Shutdown", func() bool {
			return len(c.ShimProcesses(c.Runtime, id)) == 0
		})
	})
}
