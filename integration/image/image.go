// Package image builds a tiny OCI image from a statically linked busybox binary, written as an OCI image layout
// archive (oci-layout, index.json, blobs/sha256/...) that `ctr images import` accepts under containerd 1.6 and 2.x.
//
// Three gzip tar layers hold /bin/busybox, one symlink per applet in /bin, /etc/passwd, /etc/group and the empty
// directories a container needs (/proc, /sys, /dev, /tmp, ...); several layers make overlay mounts with several
// lower directories. Everything is deterministic (fixed times, owners and order), so building twice gives the same
// digests.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

// DefaultName is the reference the tests and the demo import the image as.
const DefaultName = "docker.io/library/podtest:latest"

// PauseName is the reference of the pause image, CRI's sandbox image (no registry is reachable from the test
// machines): the same layers, with PauseCmd as its command.
const PauseName = "docker.io/library/podtest-pause:latest"

// PauseCmd is the pause image's command: a sleep that lasts as long as its pod (CRI stops a sandbox with SIGKILL).
var PauseCmd = []string{"/bin/sleep", "2147483647"}

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// Media types (OCI image spec v1.1).
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// epoch is the modification time of every file of the layer and every entry of the archive.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options say what to build.
type Options struct {
	// Busybox is the path of a statically linked busybox binary (DefaultBusybox if empty).
	Busybox string
	// Name is the image reference recorded in index.json (DefaultName if empty).
	Name string
	// OS and Architecture of the image (runtime.GOOS / runtime.GOARCH if empty).
	OS, Architecture string
	// Cmd is the image's command (["sh"] if empty).
	Cmd []string
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform of a manifest.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// Result describes what was written.
type Result struct {
	Name     string
	Index    []byte
	Manifest Descriptor
	Config   Descriptor
	Layers   []Descriptor
	DiffIDs  []string // sha256 of the uncompressed layers
	Applets  []string // the busybox applets linked in /bin
}

type blob struct {
	digest string
	data   []byte
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Applets lists the applets the busybox binary knows (`busybox --list`).
func Applets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w (is busybox-static installed? apt-get install busybox-static)", busybox, err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "busybox" || strings.ContainsAny(l, "/[") {
			continue
		}
		names = append(names, l)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", busybox)
	}
	sort.Strings(names)
	return names, nil
}

// checkStatic refuses a dynamically linked busybox: the image has no libc.
func checkStatic(data []byte) error {
	if len(data) < 4 || string(data[:4]) != "\x7fELF" {
		return fmt.Errorf("not an ELF binary")
	}
	if bytes.Contains(data[:min(len(data), 4096)], []byte("/lib64/ld-linux")) || bytes.Contains(data[:min(len(data), 4096)], []byte("/lib/ld-linux")) {
		return fmt.Errorf("dynamically linked (install busybox-static, not busybox)")
	}
	return nil
}

// Layers returns the uncompressed tars of the root filesystem, three of them so that the overlayfs snapshotter mounts
// the rootfs with several lower directories: (1) directories and /bin/busybox, (2) the applet symlinks in /bin,
// (3) /etc files.
func Layers(busybox string, applets []string) ([][]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(bb); err != nil {
		return nil, fmt.Errorf("%s: %w", busybox, err)
	}
	var layers [][]byte
	var buf bytes.Buffer
	var tw *tar.Writer
	begin := func() { buf.Reset(); tw = tar.NewWriter(&buf) }
	end := func() error {
		if err := tw.Close(); err != nil {
			return err
		}
		layers = append(layers, bytes.Clone(buf.Bytes()))
		return nil
	}
	hdr := func(name string, typ byte, mode int64, size int64, link string) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: typ, Name: name, Mode: mode, Size: size, Linkname: link,
			ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX,
		})
	}
	dir := func(name string, mode int64) error { return hdr(name+"/", tar.TypeDir, mode, 0, "") }
	file := func(name string, mode int64, data []byte) error {
		if err := hdr(name, tar.TypeReg, mode, int64(len(data)), ""); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}

	begin()
	for _, d := range []struct {
		name string
		mode int64
	}{
		{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"home", 0o755}, {"proc", 0o555}, {"root", 0o700},
		{"run", 0o755}, {"sbin", 0o755}, {"sys", 0o555}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/bin", 0o755},
		{"usr/sbin", 0o755}, {"var", 0o755}, {"var/tmp", 0o1777},
	} {
		if err := dir(d.name, d.mode); err != nil {
			return nil, err
		}
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return nil, err
	}
	if err := end(); err != nil {
		return nil, err
	}

	begin()
	if err := dir("bin", 0o755); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := hdr(path.Join("bin", a), tar.TypeSymlink, 0o777, 0, "busybox"); err != nil {
			return nil, err
		}
	}
	if err := end(); err != nil {
		return nil, err
	}

	begin()
	if err := dir("etc", 0o755); err != nil {
		return nil, err
	}
	files := []struct {
		name string
		mode int64
		data string
	}{
		{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
		{"etc/hostname", 0o644, "podtest\n"},
		{"etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost\n"},
		{"etc/resolv.conf", 0o644, ""},
		{"etc/podtest-release", 0o644, "podtest 1\n"},
	}
	for _, f := range files {
		if err := file(f.name, f.mode, []byte(f.data)); err != nil {
			return nil, err
		}
	}
	if err := end(); err != nil {
		return nil, err
	}
	return layers, nil
}

func gz(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	zw.ModTime = epoch // gzip headers carry a time and a name: keep them fixed
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write builds the image and writes its OCI layout archive to w.
func Write(w io.Writer, o Options) (*Result, error) {
	if o.Busybox == "" {
		o.Busybox = DefaultBusybox
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.OS == "" {
		o.OS = runtime.GOOS
	}
	if o.Architecture == "" {
		o.Architecture = runtime.GOARCH
	}
	if len(o.Cmd) == 0 {
		o.Cmd = []string{"sh"}
	}
	applets, err := Applets(o.Busybox)
	if err != nil {
		return nil, err
	}
	layers, err := Layers(o.Busybox, applets)
	if err != nil {
		return nil, err
	}
	r := &Result{Name: o.Name, Applets: applets}
	var blobs []blob
	for _, l := range layers {
		lgz, err := gz(l)
		if err != nil {
			return nil, err
		}
		d := Descriptor{MediaType: MediaTypeLayerGz, Digest: digestOf(lgz), Size: int64(len(lgz))}
		r.Layers = append(r.Layers, d)
		r.DiffIDs = append(r.DiffIDs, digestOf(l))
		blobs = append(blobs, blob{d.Digest, lgz})
	}

	variant := ""
	if o.Architecture == "arm64" {
		variant = "v8"
	}
	cfg := map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": o.Architecture,
		"os":           o.OS,
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd":        o.Cmd,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": r.DiffIDs},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "containerd-shim-pod-v2 integration/image from " + o.Busybox}},
	}
	if variant != "" {
		cfg["variant"] = variant
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	r.Config = Descriptor{MediaType: MediaTypeConfig, Digest: digestOf(config), Size: int64(len(config))}

	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        r.Config,
		"layers":        r.Layers,
	})
	if err != nil {
		return nil, err
	}
	r.Manifest = Descriptor{
		MediaType: MediaTypeManifest, Digest: digestOf(manifest), Size: int64(len(manifest)),
		Platform: &Platform{Architecture: o.Architecture, OS: o.OS, Variant: variant},
		Annotations: map[string]string{
			// containerd's importer names the image after io.containerd.image.name; other tools use ref.name.
			"io.containerd.image.name":          o.Name,
			"org.opencontainers.image.ref.name": refName(o.Name),
		},
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeIndex,
		"manifests":     []Descriptor{r.Manifest},
	})
	if err != nil {
		return nil, err
	}
	r.Index = index

	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/", Mode: 0o755, ModTime: epoch}); err != nil {
		return nil, err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "blobs/sha256/", Mode: 0o755, ModTime: epoch}); err != nil {
		return nil, err
	}
	blobs = append(blobs, blob{r.Config.Digest, config}, blob{r.Manifest.Digest, manifest})
	for _, b := range blobs {
		if err := put("blobs/sha256/"+strings.TrimPrefix(b.digest, "sha256:"), b.data); err != nil {
			return nil, err
		}
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := put("index.json", index); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return r, nil
}

// WriteFile builds the image into the archive file p (written to a temporary name, then renamed).
func WriteFile(p string, o Options) (*Result, error) {
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	r, err := Write(f, o)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return r, os.Rename(tmp, p)
}

// refName is the tag of a reference ("latest" for docker.io/library/x:latest).
func refName(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}
