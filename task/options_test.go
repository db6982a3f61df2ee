package task

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	runtimeoptions "github.com/podv2/containerd-shim-pod-v2/api/types/runtimeoptions/v1"

	"github.com/podv2/containerd-shim-pod-v2/mounts"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

func runtimeOptionsAny(t *testing.T, ro *runtimeoptions.Options) *anypb.Any {
	t.Helper()
	v, err := wire.Marshal(ro)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: v}
}

// containerd's CRI (1.7, 2.x) passes a handler's options table to a runtime
// that is not runc as the table re-encoded in TOML (ConfigBody); the shim
// reads runc's options and its own from it, and from a file at ConfigPath.
func TestRuntimeOptionsConfig(t *testing.T) {
	table := map[string]any{
		"BinaryName":             "/usr/local/sbin/runc",
		"SystemdCgroup":          true,
		"Root":                   "/run/r",
		"NoPivotRoot":            true,
		"IoUid":                  100000,
		"treat_ro_mounts_as_rro": "Disabled",
	}
	body, err := toml.Marshal(table) // as containerd 2.x encodes the table
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, a *anypb.Any) {
		t.Helper()
		o, own, err := decodeAllOptions(a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if o.BinaryName != "/usr/local/sbin/runc" || !o.SystemdCgroup || o.Root != "/run/r" || !o.NoPivotRoot || o.IoUid != 100000 {
			t.Errorf("%s: runc options %+v", what, o)
		}
		if own.RRO != mounts.RRODisabled {
			t.Errorf("%s: rro policy %q, want Disabled", what, own.RRO)
		}
	}
	check("config body", runtimeOptionsAny(t, &runtimeoptions.Options{ConfigBody: body}))

	path := filepath.Join(t.TempDir(), "pod-v2.toml")
	file := "# the handler's config\nBinaryName = \"/usr/local/sbin/runc\"\nSystemdCgroup = true\nRoot = '/run/r'\n" +
		"NoPivotRoot = true\nIoUid = 100000\ntreat_ro_mounts_as_rro = \"Disabled\"\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file wins over a body (containerd sends one or the other).
	check("config path", runtimeOptionsAny(t, &runtimeoptions.Options{ConfigPath: path, ConfigBody: []byte("BinaryName = 'other'")}))

	// No config, or an empty one, is the defaults.
	for _, a := range []*anypb.Any{nil, runtimeOptionsAny(t, &runtimeoptions.Options{}), runtimeOptionsAny(t, &runtimeoptions.Options{TypeUrl: "x"})} {
		o, own, err := decodeAllOptions(a)
		if err != nil || o.BinaryName != "" || own.RRO != mounts.RROIfPossible {
			t.Errorf("defaults: %+v %+v %v", o, own, err)
		}
	}
}

func TestRuntimeOptionsConfigErrors(t *testing.T) {
	cases := map[string]struct {
		ro   *runtimeoptions.Options
		want string
	}{
		"unknown key":    {&runtimeoptions.Options{ConfigBody: []byte("BinaryName = 'runc'\ntreat_ro_mount_as_rro = 'Enabled'\n")}, "treat_ro_mount_as_rro"},
		"bad policy":     {&runtimeoptions.Options{ConfigBody: []byte("treat_ro_mounts_as_rro = 'enabled'\n")}, "treat_ro_mounts_as_rro"},
		"bad toml":       {&runtimeoptions.Options{ConfigBody: []byte("BinaryName = \n")}, "config body"},
		"wrong type":     {&runtimeoptions.Options{ConfigBody: []byte("SystemdCgroup = 'yes'\n")}, "SystemdCgroup"},
		"missing config": {&runtimeoptions.Options{ConfigPath: "/nonexistent/pod-v2.toml"}, "/nonexistent/pod-v2.toml"},
	}
	for name, tc := range cases {
		_, _, err := decodeAllOptions(runtimeOptionsAny(t, tc.ro))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", name, err, tc.want)
		}
	}
}

// runc's options carry no policy: the default, IfPossible.
func TestRuncOptionsPolicy(t *testing.T) {
	v, err := wire.Marshal(&options.Options{BinaryName: "/x/runc"})
	if err != nil {
		t.Fatal(err)
	}
	o, own, err := decodeAllOptions(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: v})
	if err != nil || o.BinaryName != "/x/runc" || own.RRO != mounts.RROIfPossible {
		t.Errorf("%+v %+v %v", o, own, err)
	}
}

// The shim's settings file gives what a container's runc options (or none)
// leave unset; a missing file is no settings, a bad one an error naming it.
func TestSettingsFile(t *testing.T) {
	dir := t.TempDir()
	if c, err := loadSettings(filepath.Join(dir, "missing.toml")); c != nil || err != nil {
		t.Fatalf("missing file: %v %v", c, err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("BinaryNme = \"crun\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSettings(bad); err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "BinaryNme") {
		t.Fatalf("misspelt key: %v, want InvalidArgument naming the file and the key", err)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("BinaryName = \"/opt/runc\"\nSystemdCgroup = true\ntreat_ro_mounts_as_rro = \"Enabled\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadSettings(good)
	if err != nil {
		t.Fatal(err)
	}
	o, own := &options.Options{IoUid: 1000}, shimOptions{RRO: mounts.RROIfPossible}
	settingsDefaults(c, o, &own)
	if o.BinaryName != "/opt/runc" || !o.SystemdCgroup || o.IoUid != 1000 || own.RRO != mounts.RROEnabled {
		t.Errorf("defaults from the file: %+v %+v", o, own)
	}
	o = &options.Options{BinaryName: "/usr/sbin/runc"}
	settingsDefaults(c, o, &own)
	if o.BinaryName != "/usr/sbin/runc" {
		t.Errorf("the container's own BinaryName was replaced: %s", o.BinaryName)
	}
}
