package harness

import (
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"google.golang.org/protobuf/proto"
)

func TestParseEvent(t *testing.T) {
	for _, line := range []string{
		// ctr 1.6
		`2026-11-22 13:17:32.472632429 +0000 UTC exp /tasks/exit {"container_id":"t2","id":"t2","pid":14030,"exit_status":3,"exited_at":"2026-11-22T13:17:32.471314104Z"}`,
		// ctr 2.4
		`2026-11-22 13:18:34.811301907 +0000 UTC exp /tasks/exit {"container_id":"t2","id":"t2","pid":14030,"exit_status":3,"exited_at":{"seconds":1795353514,"nanos":809632238}}`,
	} {
		e, ok := ParseEvent(line)
		if !ok || e.Namespace != "exp" || e.Topic != "/tasks/exit" || e.Str("container_id") != "t2" || e.Num("exit_status") != 3 || e.Payload["exited_at"] == nil {
			t.Errorf("ParseEvent(%q) = %+v, %v", line, e, ok)
		}
	}
	if _, ok := ParseEvent("not an event"); ok {
		t.Error("parsed garbage")
	}
}

func TestParseStartAnswer(t *testing.T) {
	const addr = "unix:///run/containerd/s/abc"
	br, _ := proto.Marshal(&bootapi.BootstrapResult{Version: 2, Address: addr, Protocol: "ttrpc"})
	for _, in := range [][]byte{[]byte(addr), []byte(addr + "\n"), []byte(`{"version":2,"address":"` + addr + `","protocol":"ttrpc"}`), br} {
		got, err := ParseStartAnswer(in)
		if err != nil || got != addr {
			t.Errorf("ParseStartAnswer(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseStartAnswer([]byte("some log line\n" + addr)); err == nil {
		t.Error("accepted an answer with extra output")
	}
}

func TestShimBinaryName(t *testing.T) {
	for in, want := range map[string]string{
		"io.containerd.pod.v2":  "containerd-shim-pod-v2",
		"io.containerd.runc.v2": "containerd-shim-runc-v2",
	} {
		if got := ShimBinaryName(in); got != want {
			t.Errorf("ShimBinaryName(%s) = %s, want %s", in, got, want)
		}
	}
}
