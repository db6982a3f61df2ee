package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const image = "docker.io/library/podtest:latest"

// daemon is a private containerd 1.6 in a temporary directory.
type daemon struct {
	dir, sock string
	// ns is the containerd namespace of this run: runc keeps its state
	// under /run/containerd/runc/<namespace> whatever the daemon, so a
	// namespace of its own keeps the container ids of two bench runs on one
	// machine (two sessions, or a run and a leftover) from colliding.
	ns      string
	shimDir string // first on the daemon's $PATH: where the shim binary is
	cmd     *exec.Cmd
	env     []string
}

// startContainerd starts a private containerd with the shim of shimDir
// first on its $PATH; with debug, at debug level, so that it starts shims
// with -debug.
func startContainerd(shimDir string, debug bool) (*daemon, error) {
	dir, err := os.MkdirTemp("", "podv2-bench-")
	if err != nil {
		return nil, err
	}
	// A user-namespaced pod's root must be able to reach its bundle.
	os.Chmod(dir, 0o711)
	d := &daemon{dir: dir, sock: filepath.Join(dir, "c.sock"), shimDir: shimDir, ns: "bench-" + filepath.Base(dir)[len("podv2-bench-"):]}
	level := "info"
	if debug {
		level = "debug"
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, d.sock+".ttrpc", level)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	// The reference shim runs from a private copy of its binary: its file
	// pages are then shared with no other process on the machine (PSS
	// divides shared pages), as ours are.
	refDir := filepath.Join(dir, "bin")
	if err := copyFile("/usr/bin/containerd-shim-runc-v2", filepath.Join(refDir, "containerd-shim-runc-v2")); err != nil {
		return nil, fmt.Errorf("private copy of the reference shim: %w", err)
	}
	d.env = append(os.Environ(), "PATH="+refDir+":"+shimDir+":"+os.Getenv("PATH"))
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command("/usr/bin/containerd", "--config", filepath.Join(dir, "config.toml"))
	d.cmd.Env = d.env
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	for i := 0; i < 100 && !exists(d.sock); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	archive := filepath.Join(dir, "image.tar")
	mk := exec.Command("go", "run", "./cmd/mkimage", "-o", archive)
	mk.Dir = "integration"
	if out, err := mk.CombinedOutput(); err != nil {
		d.stop()
		return nil, fmt.Errorf("build image: %v: %s", err, out)
	}
	if _, err := d.ctr(nil, "images", "import", archive); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// ctr runs ctr against the daemon, bounded to two minutes.
func (d *daemon) ctr(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/ctr", append([]string{"--address", d.sock, "--namespace", d.ns}, args...)...)
	cmd.Stdin = stdin
	var out strings.Builder
	cmd.Stdout = &out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out.String(), nil
}

// timed runs ctr and returns its wall time.
func (d *daemon) timed(stdin io.Reader, stdout io.Writer, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/ctr", append([]string{"--address", d.sock, "--namespace", d.ns}, args...)...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return took, nil
}

// removeAll kills and removes every task and container, and waits for their
// shims to exit.
func (d *daemon) removeAll() {
	if out, err := d.ctr(nil, "tasks", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			d.ctr(nil, "tasks", "kill", "-s", "SIGKILL", id)
		}
		time.Sleep(300 * time.Millisecond)
		for _, id := range strings.Fields(out) {
			d.ctr(nil, "tasks", "rm", "-f", id)
		}
	}
	if out, err := d.ctr(nil, "containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			d.ctr(nil, "containers", "rm", id)
		}
	}
	// The next measurement must not count a shim that is still on its way out.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if len(shimPIDs(ours, d.sock))+len(shimPIDs(reference, d.sock)) == 0 {
			break
		}
	}
}

func (d *daemon) stop() {
	d.removeAll()
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	}
	// Mounts left under the directory would make its removal fail.
	exec.Command("sh", "-c", "grep -o ' "+d.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	os.RemoveAll(d.dir)
	// The run's namespace is its own: the directories runc and the shim
	// made for it go too once empty (what a pod left in one stays, to be
	// seen).
	for _, root := range []string{"/run/containerd/runc", "/run/containerd/io.containerd.pod.v2"} {
		os.Remove(filepath.Join(root, d.ns))
	}
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}
