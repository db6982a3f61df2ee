package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// A client talking to the shim directly asks for rootfs mounts with targets that lead through symlinks of a hostile
// image: /evil -> a host directory (absolute) and /rel -> the same directory by a ../ chain. Each mount lands where
// the symlink points inside the rootfs (the container sees it there through the same symlink), the host directory
// stays as it was, and nothing is left mounted after Delete.
func TestRootfsMountTargetsThroughSymlinks(t *testing.T) {
	harness.ForEachWith(t, harness.Options{NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		if !harness.IsOurs(c.Runtime) {
			t.Fatalf("mount targets through a direct client are this runtime's own behaviour: run with TEST_RUNTIME=%s", harness.RuntimePod)
		}
		id := c.ID("symlinked-targets")
		b := c.NewDirectBundle(t, id, []string{"sh", "-c",
			"echo a > /evil/sub/marker && echo b > /rel/sub2/marker && cat /evil/sub/marker /rel/sub2/marker"}, nil)
		host := filepath.Join(c.Dir, "host-etc") // stands for the host's /etc
		if err := os.MkdirAll(host, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, "passwd"), []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		image := b.Rootfs[0].Source
		rel, err := filepath.Rel(filepath.Join(b.Path, "rootfs"), host)
		if err != nil {
			t.Fatal(err)
		}
		for name, to := range map[string]string{"evil": host, "rel": rel} {
			if err := os.Symlink(to, filepath.Join(image, name)); err != nil {
				t.Fatal(err)
			}
		}
		rootfs := append(slices.Clone(b.Rootfs),
			&types.Mount{Type: "tmpfs", Source: "tmpfs", Target: "/evil/sub", Options: []string{"size=1m"}},
			&types.Mount{Type: "tmpfs", Source: "tmpfs", Target: "/rel/sub2", Options: []string{"size=1m"}})
		t.Cleanup(func() {
			for _, m := range harness.MountsUnder(host) {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		})

		s := c.StartShimDirect(t, harness.ShimPath(t), b)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		checkHost := func(when string) {
			t.Helper()
			ents, err := os.ReadDir(host)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "passwd" {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("%s: the host directory the image's symlinks name was changed: it holds %q", when, names)
			}
			if m := harness.MountsUnder(host); len(m) != 0 {
				t.Errorf("%s: mounted on the host directory the image's symlinks name: %v", when, m)
			}
		}

		_, err = s.Task.Create(ctx, &taskapi.CreateTaskRequest{ID: id, Bundle: b.Path, Rootfs: rootfs, Stdout: b.Stdout, Stderr: b.Stderr})
		checkHost("after Create")
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := s.Task.Start(ctx, &taskapi.StartRequest{ID: id}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		wr, err := s.Task.Wait(ctx, &taskapi.WaitRequest{ID: id})
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if _, err := s.Task.Delete(ctx, &taskapi.DeleteRequest{ID: id}); err != nil {
			t.Errorf("Delete: %v", err)
		}
		if !b.WaitIO(10 * time.Second) {
			t.Errorf("stdout/stderr fifos still open 10 s after Delete")
		}
		if wr.ExitStatus != 0 || b.Out.String() != "a\nb\n" {
			t.Errorf("the container did not find its mounts through its symlinks: exit %d, stdout %q, stderr %q",
				wr.ExitStatus, b.Out.String(), b.Err.String())
		}
		checkHost("after Delete")
		if m := harness.MountsUnder(b.Path); len(m) != 0 {
			t.Errorf("left mounted after Delete: %v", m)
		}
		_ = s.Task.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
		harness.Eventually(t, 10*time.Second, "the shim exits after Shutdown", func() bool {
			return len(c.ShimProcesses(c.Runtime, id)) == 0
		})
	})
}
