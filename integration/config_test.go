package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// The README's config.toml snippets register the runtime with CRI: containerd 1.6 (`version = 2`) and 2.4
// (`version = 3`) load them, and CRI reports a runtime handler "pod" of our runtime type with the pod annotations,
// the sandboxer (2.x) and the options the README sets.
// (The other tests load the same snippet with CRI disabled, where it only has to parse; the CRI tests run on it.)
func TestREADMEConfig(t *testing.T) {
	harness.ForEachWith(t, harness.Options{CRI: true, NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		snippet, fromREADME, err := harness.READMERuntimeSnippet(c.Flavour.ConfigVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !fromREADME {
			t.Errorf("README.md has no ```toml block starting with `version = %d` that registers the shim", c.Flavour.ConfigVersion)
		}
		t.Logf("snippet (from README: %v):\n%s", fromREADME, snippet)

		conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rs := runtimeapi.NewRuntimeServiceClient(conn)
		var st *runtimeapi.StatusResponse
		// CRI may still be initialising right after containerd answers.
		if !harness.WaitUntil(10*time.Second, func() bool {
			st, err = rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
			return err == nil || c.LogContains("failed to load plugin io.containerd.grpc.v1.cri") ||
				c.LogContains(`failed to load plugin" error=`)
		}) || err != nil {
			// containerd 1.6 replaces its default runtimes table with the one in config.toml: a snippet that adds
			// only "pod" leaves default_runtime_name "runc" undefined, and CRI refuses to load.
			for _, l := range c.LogLines("failed to load plugin") {
				t.Logf("containerd: %s", l)
			}
			t.Fatalf("CRI Status: %v (CRI did not load with the README's snippet: see the lines above)", err)
		}
		raw, ok := st.Info["config"]
		if !ok {
			t.Fatalf("CRI Status has no config: keys %v", keys(st.Info))
		}
		var cfg struct {
			Containerd struct {
				Runtimes map[string]struct {
					Type                  string         `json:"runtimeType"`
					Path                  string         `json:"runtimePath"`
					PodAnnotations        []string       `json:"PodAnnotations"`
					Sandboxer             string         `json:"sandboxer"`
					DisablePauseImagePull bool           `json:"disablePauseImagePull"`
					Options               map[string]any `json:"options"`
				} `json:"runtimes"`
			} `json:"containerd"`
		}
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Fatalf("CRI config: %v: %s", err, raw)
		}
		pod, ok := cfg.Containerd.Runtimes["pod"]
		if !ok {
			t.Fatalf("CRI has no runtime handler \"pod\": %v", keysOf(cfg.Containerd.Runtimes))
		}
		// The handler's keys, then its options table, as the README sets them.
		inPod, inOptions := false, false
		for _, line := range strings.Split(snippet, "\n") {
			line = strings.TrimSpace(strings.SplitN(line, "#", 2)[0])
			if strings.HasPrefix(line, "[") {
				inPod = strings.HasSuffix(line, ".runtimes.pod]")
				inOptions = strings.HasSuffix(line, ".runtimes.pod.options]")
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || !inPod && !inOptions {
				continue
			}
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
			var got string
			switch {
			case inOptions:
				o, ok := pod.Options[k]
				if !ok {
					t.Errorf("option %s of the README is not in CRI's config: %v", k, pod.Options)
					continue
				}
				got = strings.Trim(toString(o), `"`)
				if k == "ConfigPath" {
					v = c.SettingsPath() // the harness gives each daemon's shims a settings file of its own
				}
			case k == "runtime_type":
				got = pod.Type
			case k == "sandboxer":
				got = pod.Sandboxer
			case k == "disable_pause_image_pull":
				got = toString(pod.DisablePauseImagePull)
			case k == "pod_annotations":
				got = toString(pod.PodAnnotations)
				v = strings.ReplaceAll(v, " ", "")
			default:
				t.Errorf("the README's handler sets %s, which this test does not check", k)
				continue
			}
			if got != v {
				t.Errorf("%s: CRI has %s, the README says %s", k, got, v)
			}
		}
		// Our runtime type, found on $PATH, everywhere; on 2.x the shim is the sandbox, with no options table (a
		// user-namespaced container's task options would not decode: see the README).
		switch {
		case pod.Type != harness.RuntimePod || pod.Path != "":
			t.Errorf("handler pod: runtime type %q, path %q; want %s found on $PATH", pod.Type, pod.Path, harness.RuntimePod)
		case !c.Flavour.Is16() && (pod.Sandboxer != "shim" || len(pod.Options) != 0):
			t.Errorf("handler pod on containerd 2.x: sandboxer %q, options %v; want the shim as sandboxer and no options", pod.Sandboxer, pod.Options)
		}
		t.Logf("CRI runtime handler pod: %+v", pod)
	})
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
