package task

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/podv2/containerd-shim-pod-v2/mounts"
	"github.com/podv2/containerd-shim-pod-v2/process"
)

// What containerd learns from -info decides what it lets Kubernetes run on a
// handler (containerd 2.2.7+, 2.3.4+, 2.4): user-namespaced pods only if the
// features list the user namespace and linux.mountExtensions.idmap.enabled,
// recursively read-only mounts only if mountOptions has "rro". So the
// features the shim reports are the runtime's, adjusted by what the shim adds
// or takes away:
//
//   - idmap: enabled when the runtime makes id-mapped mounts itself, and also
//     when it does not but the kernel can: the shim then makes them (see
//     stageIDMapped);
//   - rro: listed only when the runtime lists it and the kernel has
//     mount_setattr (Linux 5.12); the shim never makes them itself.

// features is what a runtime can do with mounts, with the kernel's part.
type features struct {
	// json is the runtime's features JSON, adjusted (see adjustFeatures).
	json []byte
	// rro: read-only mounts can be made recursively read-only (runtime and
	// kernel); rroWhyNot says why not.
	rro       bool
	rroWhyNot string
	// runtimeIDMap: the runtime makes id-mapped mounts itself;
	// shimIDMap: it does not, and the shim can.
	runtimeIDMap, shimIDMap bool
}

// runtimeFeatures is the part of a features JSON the shim reads.
type runtimeFeatures struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

// kernelSupport is what the kernel can do of what features report.
type kernelSupport struct {
	rro   mounts.RROSupport
	idmap bool
}

func hostKernel() kernelSupport {
	return kernelSupport{rro: mounts.KernelRRO(), idmap: mounts.KernelIDMap()}
}

// featuresOf reads a runtime's features JSON and what the kernel can do.
func featuresOf(raw []byte, k kernelSupport) (*features, error) {
	var rf runtimeFeatures
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, fmt.Errorf("runtime features: %w", err)
	}
	f := &features{}
	switch {
	case !slices.Contains(rf.MountOptions, "rro"):
		f.rroWhyNot = "the runtime does not list rro among its mount options (runc >= 1.1 does)"
	case !k.rro.OK:
		f.rroWhyNot = k.rro.Reason
	default:
		f.rro = true
	}
	if l := rf.Linux; l != nil && l.MountExtensions != nil && l.MountExtensions.IDMap != nil && l.MountExtensions.IDMap.Enabled != nil {
		f.runtimeIDMap = *l.MountExtensions.IDMap.Enabled
	}
	f.shimIDMap = !f.runtimeIDMap && k.idmap
	adjusted, err := adjustFeatures(raw, f.rro, f.runtimeIDMap || f.shimIDMap)
	if err != nil {
		return nil, err
	}
	f.json = adjusted
	return f, nil
}

// rroSupport is the features' word on rro, for the policy.
func (f *features) rroSupport() mounts.RROSupport {
	return mounts.RROSupport{OK: f.rro, Reason: f.rroWhyNot}
}

// adjustFeatures rewrites a features JSON: "rro" in mountOptions only with
// rro, linux.mountExtensions.idmap.enabled set to idmap when true. Every
// other field is kept as the runtime wrote it.
func adjustFeatures(raw []byte, rro, idmap bool) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("runtime features: %w", err)
	}
	if opts, ok := doc["mountOptions"].([]any); ok && !rro {
		doc["mountOptions"] = slices.DeleteFunc(opts, func(o any) bool { return o == "rro" })
	}
	if idmap {
		linux := object(doc, "linux")
		ext := object(linux, "mountExtensions")
		object(ext, "idmap")["enabled"] = true
	}
	return json.Marshal(doc)
}

// object returns m[key] as an object, made when missing (or not an object).
func object(m map[string]any, key string) map[string]any {
	if o, ok := m[key].(map[string]any); ok {
		return o
	}
	o := map[string]any{}
	m[key] = o
	return o
}

// featureCache holds the features of each runtime binary the shim ran,
// computed once: `runc features` is a runtime run, and only containers with
// read-only or id-mapped mounts need them.
type featureCache struct {
	// mu guards byBinary: one computation per binary.
	mu       sync.Mutex
	byBinary map[string]*features
}

// get returns the features of the runtime binary, running `features` until
// it answers once. A runtime without a features command (runc < 1.1) is one
// that lists nothing: no rro, and id-mapped mounts made by the shim.
func (c *featureCache) get(ctx context.Context, binary string, children process.Children) *features {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.byBinary[binary]; ok {
		return f
	}
	k := hostKernel()
	rt := &process.Runc{Binary: binary, Children: children}
	raw, err := rt.Features(ctx)
	var f *features
	if err == nil {
		f, err = featuresOf(raw, k)
	}
	if err != nil {
		slog.Warn("no features from the runtime: no recursively read-only mounts; id-mapped mounts made by the shim", "runtime", rt.Binary, "error", err)
		return &features{rroWhyNot: fmt.Sprintf("the runtime's features are unknown (%v)", err), shimIDMap: k.idmap}
	}
	if c.byBinary == nil {
		c.byBinary = map[string]*features{}
	}
	c.byBinary[binary] = f
	return f
}
