package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// disabledPlugins are plugins a private test daemon does not need: CRI (slow, and ours is not a Kubernetes node),
// snapshotters that probe the host, NRI (it would create /var/run/nri/nri.sock on the host), /opt/containerd, tracing.
func (c *Containerd) disabledPlugins() []string {
	common := []string{
		"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
		"io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
	}
	var cri, other []string
	if c.Flavour.Is16() {
		cri = []string{"io.containerd.grpc.v1.cri"}
		other = []string{"io.containerd.snapshotter.v1.aufs"}
	} else {
		cri = []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
			"io.containerd.podsandbox.controller.v1.podsandbox"}
		other = []string{"io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",
			"io.containerd.differ.v1.erofs", "io.containerd.nri.v1.nri"}
	}
	out := append(common, other...)
	if !c.Options.CRI {
		out = append(out, cri...)
	}
	return out
}

func (c *Containerd) config() (string, error) {
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	fmt.Fprintf(&b, "# written by the containerd-shim-pod-v2 integration harness\nversion = %d\n", c.Flavour.ConfigVersion)
	fmt.Fprintf(&b, "root = %s\nstate = %s\n", q(c.Root), q(c.State))
	b.WriteString("imports = []\noom_score = 0\n")
	var dis []string
	for _, p := range c.disabledPlugins() {
		dis = append(dis, q(p))
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(dis, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n[ttrpc]\n  address = %s\n\n", q(c.Address), q(c.TTRPCAddress))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"debug\"\n\n[metrics]\n  address = \"\"\n\n")
	if c.Options.CRI {
		b.WriteString(c.criConfig())
	}
	// The runtime registration, as the README shows it (or the same snippet built in, while the README has none),
	// with runtime_path naming the shim under test. ctr does not need it (--runtime io.containerd.pod.v2 works by
	// name); it proves the snippet loads, and CRI's handler "pod" is it.
	snippet, _, err := READMERuntimeSnippet(c.Flavour.ConfigVersion)
	if err != nil {
		return "", err
	}
	b.WriteString(WithSettingsPath(WithShimPath(snippet, ShimPath(c.T)), c.SettingsPath()))
	b.WriteString("\n")
	if c.Options.ExtraConfig != "" {
		b.WriteString(c.Options.ExtraConfig)
		b.WriteString("\n")
	}
	return b.String(), nil
}

var (
	tomlBlock   = regexp.MustCompile("(?s)```toml\n(.*?)```")
	runtimePath = regexp.MustCompile(`(?m)^(\s*runtime_path\s*=\s*)"[^"]*"`)
)

// READMERuntimeSnippet returns the README's config.toml block for the config version (2: containerd 1.6/1.7,
// 3: containerd 2.x) that registers the shim (runtime_path ending in containerd-shim-pod-v2, or runtime_type
// io.containerd.pod.v2), without its `version` line, and whether it came from the README (false: the built-in copy).
func READMERuntimeSnippet(version int) (string, bool, error) {
	if root, err := RepoRoot(); err == nil {
		if b, err := os.ReadFile(filepath.Join(root, "README.md")); err == nil {
			for _, m := range tomlBlock.FindAllStringSubmatch(string(b), -1) {
				lines := strings.Split(strings.TrimSpace(m[1]), "\n")
				if len(lines) > 1 && strings.TrimSpace(lines[0]) == fmt.Sprintf("version = %d", version) &&
					(strings.Contains(m[1], ShimName+`"`) || strings.Contains(m[1], `runtime_type = "io.containerd.pod.v2"`)) {
					return strings.Join(lines[1:], "\n") + "\n", true, nil
				}
			}
		}
	}
	switch version {
	case 2:
		return `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pod]
  runtime_type = "io.containerd.pod.v2"
  pod_annotations = ["io.containerd.pod.v2.*"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.pod.options]
    BinaryName = "/usr/sbin/runc"
    SystemdCgroup = false
`, false, nil
	case 3:
		return `[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "/usr/local/bin/containerd-shim-pod-v2"
  pod_annotations = ["io.containerd.pod.v2.*"]
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.pod.options]
    BinaryName = "/usr/sbin/runc"
    SystemdCgroup = false
`, false, nil
	}
	return "", false, fmt.Errorf("no runtime snippet for config version %d", version)
}

// SettingsPath is the shim's settings file for this daemon (see the README): its shims read it, never the host's.
// It exists (empty: the defaults) unless a test writes it.
func (c *Containerd) SettingsPath() string { return filepath.Join(c.Dir, "shim-settings.toml") }

var configPath = regexp.MustCompile(`(?m)^(\s*ConfigPath\s*=\s*)"[^"]*"`)

// WithSettingsPath returns the snippet with its ConfigPath (if any) set to path.
func WithSettingsPath(snippet, path string) string {
	return configPath.ReplaceAllString(snippet, fmt.Sprintf("${1}%q", path))
}

// WithShimPath returns the snippet with its runtime_path (if any) set to shim.
func WithShimPath(snippet, shim string) string {
	return runtimePath.ReplaceAllString(snippet, fmt.Sprintf("${1}%q", shim))
}
