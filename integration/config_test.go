package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/podv2/containerd-shim-pod-v2/integration/harness"
)

// The README's config.toml snippets register the runtime with CRI: containerd 1.6 (`version = 2`) and 2.4
// (`version = 3`) load them, and CRI reports a runtime handler "pod" of type io.containerd.pod.v2 with the options
// the README sets. (The other tests load the same snippet with CRI disabled, where it only has to parse.)
func TestREADMEConfig(t *testing.T) {
	harness.ForEachWith(t, harness.Options{CRI: true, NoImage: true}, func(t *testing.T, c *harness.Containerd) {
		snippet, fromREADME, err := harness.READMERuntimeSnippet(c.Flavour.ConfigVersion)
		if err != nil {
			t.Fatal(err)
		}
		if !fromREADME {
			t.Errorf("README.md has no ```toml block starting with `version = %d` that registers io.containerd.pod.v2", c.Flavour.ConfigVersion)
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
		if pod.Type != harness.RuntimePod {
			t.Errorf("handler pod: runtime type %q, want %q", pod.Type, harness.RuntimePod)
		}
		// The options the README sets reach CRI (it hands them to the shim as containerd.runc.v1.Options).
		for _, line := range strings.Split(snippet, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(strings.SplitN(line, "#", 2)[0]), "=")
			if !ok || strings.HasPrefix(strings.TrimSpace(line), "[") || strings.TrimSpace(k) == "runtime_type" {
				continue
			}
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
			// Keys of the runtime itself (containerd 2.x), not of its options.
			switch k {
			case "sandboxer":
				if pod.Sandboxer != v {
					t.Errorf("sandboxer: CRI has %q, the README says %q", pod.Sandboxer, v)
				}
				continue
			case "disable_pause_image_pull":
				if fmt.Sprint(pod.DisablePauseImagePull) != v {
					t.Errorf("disable_pause_image_pull: CRI has %v, the README says %s", pod.DisablePauseImagePull, v)
				}
				continue
			}
			got, ok := pod.Options[k]
			if !ok {
				t.Errorf("option %s of the README is not in CRI's config: %v", k, pod.Options)
				continue
			}
			if s := strings.Trim(toString(got), `"`); s != v {
				t.Errorf("option %s: CRI has %s, the README says %s", k, s, v)
			}
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
