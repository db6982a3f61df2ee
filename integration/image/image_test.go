package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// The archive is a valid OCI layout whose index names the image and platform, whose blobs match their digests, and
// which is the same byte for byte when built twice.
func TestWriteDeterministicOCILayout(t *testing.T) {
	var a, b bytes.Buffer
	ra, err := Write(&a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(&b, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds differ")
	}
	if len(ra.Layers) != 3 || len(ra.DiffIDs) != 3 {
		t.Fatalf("want 3 layers, got %d (%d diff ids)", len(ra.Layers), len(ra.DiffIDs))
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %q", files["oci-layout"])
	}
	var index struct {
		Manifests []Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	m := index.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != DefaultName || m.Platform == nil || m.Platform.OS != "linux" {
		t.Errorf("index entry: %+v", m)
	}
	for _, d := range append([]Descriptor{ra.Manifest, ra.Config}, ra.Layers...) {
		blob, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok || digestOf(blob) != d.Digest || int64(len(blob)) != d.Size {
			t.Errorf("blob %s missing or wrong (%d bytes)", d.Digest, len(blob))
		}
	}
	for _, a := range []string{"sh", "cat", "sleep", "true", "sha256sum", "wc"} {
		found := false
		for _, x := range ra.Applets {
			found = found || x == a
		}
		if !found {
			t.Errorf("applet %s missing", a)
		}
	}
}
