package task

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/podv2/containerd-shim-pod-v2/mounts"
)

// Trimmed `runc features` of runc 1.1.5 (no mountExtensions) and 1.4.3.
const (
	features115 = `{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2-dev","hooks":["prestart"],
"mountOptions":["bind","rbind","ro","rro","rw"],
"linux":{"namespaces":["mount","network","user"],"capabilities":["CAP_CHOWN"],"cgroup":{"v1":true,"v2":true}},
"annotations":{"io.github.seccomp.libseccomp.version":"2.5.4","org.opencontainers.runc.version":"1.1.5"}}`
	features143 = `{"ociVersionMin":"1.0.0","ociVersionMax":"1.3.0","mountOptions":["bind","ro","rro"],
"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":true}},"netDevices":{"enabled":true}},
"potentiallyUnsafeConfigAnnotations":["bpf."]}`
	featuresNoRRO = `{"ociVersionMin":"1.0.0","ociVersionMax":"1.0.2-dev","mountOptions":["bind","ro"],"linux":{"namespaces":["user"]}}`
)

var (
	kernelAll  = kernelSupport{rro: mounts.RROSupport{OK: true}, idmap: true}
	kernelNone = kernelSupport{rro: mounts.RROSupport{Reason: "the kernel has no mount_setattr"}}
)

// reported decodes the adjusted JSON as containerd reads it.
type reported struct {
	MountOptions []string `json:"mountOptions"`
	Linux        struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
	Annotations map[string]string `json:"annotations"`
}

func decodeReported(t *testing.T, f *features) reported {
	t.Helper()
	var r reported
	if err := json.Unmarshal(f.json, &r); err != nil {
		t.Fatalf("adjusted features are not JSON: %v: %s", err, f.json)
	}
	return r
}

func (r reported) idmap() bool {
	e := r.Linux.MountExtensions
	return e != nil && e.IDMap != nil && e.IDMap.Enabled != nil && *e.IDMap.Enabled
}

func TestFeaturesOf(t *testing.T) {
	// runc 1.1.5 on a kernel with mount_setattr: rro is the runtime's, id-mapped
	// mounts are the shim's, and -info says both; the rest is as runc wrote it.
	f, err := featuresOf([]byte(features115), kernelAll)
	if err != nil {
		t.Fatal(err)
	}
	if !f.rro || f.runtimeIDMap || !f.shimIDMap {
		t.Errorf("runc 1.1.5: rro %v, runtime idmap %v, shim idmap %v; want true, false, true", f.rro, f.runtimeIDMap, f.shimIDMap)
	}
	r := decodeReported(t, f)
	if !r.idmap() || !slices.Contains(r.MountOptions, "rro") || !slices.Contains(r.Linux.Namespaces, "user") {
		t.Errorf("runc 1.1.5: reported %s", f.json)
	}
	if r.Annotations["org.opencontainers.runc.version"] != "1.1.5" || !strings.Contains(string(f.json), `"capabilities":["CAP_CHOWN"]`) ||
		!strings.Contains(string(f.json), `"cgroup":{"v1":true,"v2":true}`) {
		t.Errorf("runc 1.1.5: fields lost: %s", f.json)
	}

	// runc 1.4.3 makes id-mapped mounts itself.
	f, err = featuresOf([]byte(features143), kernelAll)
	if err != nil {
		t.Fatal(err)
	}
	if !f.rro || !f.runtimeIDMap || f.shimIDMap || !decodeReported(t, f).idmap() ||
		!strings.Contains(string(f.json), `"potentiallyUnsafeConfigAnnotations":["bpf."]`) || !strings.Contains(string(f.json), `"netDevices":{"enabled":true}`) {
		t.Errorf("runc 1.4.3: rro %v, runtime idmap %v, shim idmap %v: %s", f.rro, f.runtimeIDMap, f.shimIDMap, f.json)
	}

	// A runtime without rro: none reported, and the reason says so.
	f, err = featuresOf([]byte(featuresNoRRO), kernelAll)
	if err != nil {
		t.Fatal(err)
	}
	if f.rro || !strings.Contains(f.rroWhyNot, "runtime does not list rro") || slices.Contains(decodeReported(t, f).MountOptions, "rro") {
		t.Errorf("no rro: %v %q %s", f.rro, f.rroWhyNot, f.json)
	}

	// A kernel without mount_setattr: no rro, and no id-mapped mounts by the shim.
	f, err = featuresOf([]byte(features115), kernelNone)
	if err != nil {
		t.Fatal(err)
	}
	r = decodeReported(t, f)
	if f.rro || f.shimIDMap || r.idmap() || slices.Contains(r.MountOptions, "rro") || f.rroWhyNot != kernelNone.rro.Reason {
		t.Errorf("old kernel: rro %v (%q), shim idmap %v: %s", f.rro, f.rroWhyNot, f.shimIDMap, f.json)
	}

	if _, err := featuresOf([]byte("runc: unknown command features"), kernelAll); err == nil {
		t.Error("features that are not JSON were accepted")
	}
}
