package task

import (
	"bytes"
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/types/runc/options"
	runtimeoptions "github.com/podv2/containerd-shim-pod-v2/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podv2/containerd-shim-pod-v2/mounts"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// defaultRuntimeRoot is the runtime's state root, as the reference shim uses it.
const defaultRuntimeRoot = "/run/containerd/runc"

// decodeOptions reads the runc options of a Create (see decodeAllOptions).
func decodeOptions(a *anypb.Any) (*options.Options, error) {
	o, _, err := decodeAllOptions(a)
	return o, err
}

// shimOptions are the options of the shim itself, next to runc's: they come
// only in a runtimeoptions.v1.Options config (see configOptions).
type shimOptions struct {
	// RRO is the runtime handler's policy for read-only bind mounts
	// (treat_ro_mounts_as_rro); a container's annotation overrides it.
	RRO mounts.RROPolicy
}

// decodeAllOptions reads the options Any of a Create or of -info:
//
//   - containerd.runc.v1.Options: runc's options (what containerd sends for
//     runtime_type io.containerd.runc.v2, and with task options);
//   - containerd.linux.runc.CreateOptions: see decodeLegacyCreateOptions;
//   - runtimeoptions.v1.Options, what containerd's CRI makes of a handler's
//     options table for any other runtime_type: a TOML config, from the file
//     at ConfigPath or else in ConfigBody (the table itself, containerd 1.7
//     and 2.x), with runc's option names and the shim's own (configOptions).
//
// No options is the defaults. Errors are InvalidArgument.
func decodeAllOptions(a *anypb.Any) (*options.Options, shimOptions, error) {
	o := &options.Options{}
	own := shimOptions{RRO: mounts.RROIfPossible}
	switch name := typeName(a.GetTypeUrl()); name {
	case "":
		return o, own, applySettings(o, &own)
	case "containerd.runc.v1.Options":
		if err := wire.Unmarshal(a.GetValue(), o); err != nil {
			return nil, own, invalid("decode runtime options %s: %v", name, err)
		}
		return o, own, applySettings(o, &own)
	case "containerd.linux.runc.CreateOptions":
		// What containerd's client sends a runtime whose name is not
		// io.containerd.runc.*: the v1 Linux runtime's options.
		if err := decodeLegacyCreateOptions(a.GetValue(), o); err != nil {
			return nil, own, invalid("decode runtime options %s: %v", name, err)
		}
		return o, own, applySettings(o, &own)
	case "runtimeoptions.v1.Options":
		// A handler's table is the whole of the settings: it wins over the
		// shim's settings file.
		var ro runtimeoptions.Options
		if err := wire.Unmarshal(a.GetValue(), &ro); err != nil {
			return nil, own, invalid("decode runtime options %s: %v", name, err)
		}
		if err := readConfig(&ro, o, &own); err != nil {
			return nil, own, err
		}
		return o, own, nil
	default:
		return nil, own, invalid("unsupported runtime options type %q (want containerd.runc.v1.Options or runtimeoptions.v1.Options)", a.GetTypeUrl())
	}
}

// settingsEnv, in containerd's environment (which the shim inherits), names
// another file for the shim's settings than DefaultSettingsPath.
const settingsEnv = "CONTAINERD_SHIM_POD_V2_CONFIG"

// DefaultSettingsPath is the shim's own settings file: the same keys as a
// runtimeoptions config, the defaults for what a container's options do not
// name. containerd 2.x's CRI can give a runtime of the shim's type no options
// table that user-namespaced pods survive (see the README), hence a file.
const DefaultSettingsPath = "/etc/containerd/containerd-shim-pod-v2.toml"

// settings is the shim's settings file, read once per shim; nil if there is
// none.
var settings = sync.OnceValues(func() (*configOptions, error) {
	return loadSettings(cmp.Or(os.Getenv(settingsEnv), DefaultSettingsPath))
})

func loadSettings(path string) (*configOptions, error) {
	body, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, invalid("read the shim's settings: %v", err)
	}
	c, err := decodeConfig(body, path)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// applySettings fills in what runc's options (or none) leave unset from the
// shim's settings file.
func applySettings(o *options.Options, own *shimOptions) error {
	c, err := settings()
	if err != nil {
		return err
	}
	settingsDefaults(c, o, own)
	return nil
}

func settingsDefaults(c *configOptions, o *options.Options, own *shimOptions) {
	if c == nil {
		return
	}
	o.BinaryName = cmp.Or(o.BinaryName, c.BinaryName)
	o.Root = cmp.Or(o.Root, c.Root)
	o.SystemdCgroup = o.SystemdCgroup || c.SystemdCgroup
	o.NoPivotRoot = o.NoPivotRoot || c.NoPivotRoot
	o.NoNewKeyring = o.NoNewKeyring || c.NoNewKeyring
	o.CriuImagePath = cmp.Or(o.CriuImagePath, c.CriuImagePath)
	o.CriuWorkPath = cmp.Or(o.CriuWorkPath, c.CriuWorkPath)
	if policy, err := mounts.ParseRROPolicy(c.TreatRoMountsAsRro); err == nil { // checked when read
		own.RRO = policy
	}
}

// configOptions are the keys of a runtimeoptions config and of the shim's
// settings file: runc's options by the names containerd's runc options table
// uses, and the shim's own.
type configOptions struct {
	BinaryName    string
	Root          string
	SystemdCgroup bool
	NoPivotRoot   bool
	NoNewKeyring  bool
	IoUid         uint32
	IoGid         uint32
	CriuImagePath string
	CriuWorkPath  string
	// TreatRoMountsAsRro is the policy for read-only bind mounts:
	// Enabled, IfPossible (or empty) or Disabled.
	TreatRoMountsAsRro string `toml:"treat_ro_mounts_as_rro"`
}

// readConfig reads a runtimeoptions config into o and own.
func readConfig(ro *runtimeoptions.Options, o *options.Options, own *shimOptions) error {
	body, from := ro.GetConfigBody(), "the options' config body"
	if p := ro.GetConfigPath(); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return invalid("read the runtime options' config file: %v", err)
		}
		body, from = b, p
	}
	c, err := decodeConfig(body, from)
	if err != nil {
		return err
	}
	policy, err := mounts.ParseRROPolicy(c.TreatRoMountsAsRro)
	if err != nil {
		return invalid("runtime options in %s: treat_ro_mounts_as_rro: %v", from, err)
	}
	o.BinaryName, o.Root, o.SystemdCgroup = c.BinaryName, c.Root, c.SystemdCgroup
	o.NoPivotRoot, o.NoNewKeyring = c.NoPivotRoot, c.NoNewKeyring
	o.IoUid, o.IoGid = c.IoUid, c.IoGid
	o.CriuImagePath, o.CriuWorkPath = c.CriuImagePath, c.CriuWorkPath
	own.RRO = policy
	return nil
}

// decodeConfig reads a TOML config of runc's option names and the shim's
// own. An unknown key is an error naming it: a misspelt option must not
// pass unseen.
func decodeConfig(body []byte, from string) (configOptions, error) {
	var c configOptions
	dec := toml.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return c, invalid("runtime options in %s: unknown keys: %s", from, strings.Join(unknownKeys(strict), ", "))
		}
		return c, invalid("runtime options in %s: %v", from, err)
	}
	if _, err := mounts.ParseRROPolicy(c.TreatRoMountsAsRro); err != nil {
		return c, invalid("runtime options in %s: treat_ro_mounts_as_rro: %v", from, err)
	}
	return c, nil
}

func unknownKeys(e *toml.StrictMissingError) []string {
	var keys []string
	for _, d := range e.Errors {
		keys = append(keys, strings.Join(d.Key(), "."))
	}
	return keys
}

// runtimeRoot is where the runtime keeps state for this namespace.
func runtimeRoot(o *options.Options, namespace string) string {
	root := defaultRuntimeRoot
	if o.Root != "" {
		root = o.Root
	}
	return filepath.Join(root, namespace)
}

func typeName(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, "/")+1:]
}

// decodeLegacyCreateOptions reads the fields of containerd.linux.runc.CreateOptions
// that mean something to this shim. The message is not in containerd's API
// module, so its wire format is read directly.
func decodeLegacyCreateOptions(b []byte, o *options.Options) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var str string
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			var raw []byte
			raw, n = protowire.ConsumeBytes(b)
			str = string(raw)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			o.NoPivotRoot = v != 0
		case 8:
			o.NoNewKeyring = v != 0
		case 9:
			o.ShimCgroup = str
		case 10:
			o.IoUid = uint32(v)
		case 11:
			o.IoGid = uint32(v)
		case 12:
			o.CriuWorkPath = str
		case 13:
			o.CriuImagePath = str
		}
	}
	return nil
}
