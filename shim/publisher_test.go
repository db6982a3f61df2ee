package shim

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	eventstypes "github.com/podv2/containerd-shim-pod-v2/api/events"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	eventsapi "github.com/podv2/containerd-shim-pod-v2/api/services/ttrpc/events/v1"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// eventSink is a containerd events service that refuses the first failures calls.
type eventSink struct {
	mu       sync.Mutex
	failures int
	topics   []string
	ids      []string
}

func (s *eventSink) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return nil, errors.New("containerd is busy")
	}
	var exit eventstypes.TaskExit
	if err := wire.Unmarshal(r.Envelope.Event.Value, &exit); err != nil {
		return nil, err
	}
	if r.Envelope.Event.TypeUrl != "containerd.events.TaskExit" || r.Envelope.Namespace != "ns" {
		return nil, errors.New("bad envelope")
	}
	s.topics = append(s.topics, r.Envelope.Topic)
	s.ids = append(s.ids, exit.ID)
	return &emptypb.Empty{}, nil
}

func startSink(t *testing.T, path string, sink *eventSink) func() {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService("containerd.services.events.ttrpc.v1.Events", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Forward": wire.Method(sink.Forward),
	}})
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	return func() { srv.Close() }
}

func TestPublisherKeepsOrderThroughFailures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	sink := &eventSink{failures: 5}
	stop := startSink(t, path, sink)
	defer stop()

	p := newPublisher("unix://"+path, "ns")
	want := []string{}
	for i := 0; i < 50; i++ {
		id := string(rune('a'+i%26)) + string(rune('0'+i/26))
		want = append(want, id)
		p.Publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: "c", ID: id})
	}
	p.Close(10 * time.Second)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.ids) != len(want) {
		t.Fatalf("delivered %d events, want %d", len(sink.ids), len(want))
	}
	for i := range want {
		if sink.ids[i] != want[i] || sink.topics[i] != "/tasks/exit" {
			t.Fatalf("event %d = %s %s, want %s in order", i, sink.topics[i], sink.ids[i], want[i])
		}
	}
}

func TestPublisherWaitsForContainerd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	p := newPublisher("unix://"+path, "ns")
	p.Publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: "c", ID: "first"})
	p.Publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: "c", ID: "second"})
	// containerd comes up late: nothing is lost meanwhile.
	time.Sleep(300 * time.Millisecond)
	sink := &eventSink{}
	stop := startSink(t, path, sink)
	defer stop()
	p.Close(10 * time.Second)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.ids) != 2 || sink.ids[0] != "first" || sink.ids[1] != "second" {
		t.Fatalf("delivered %v, want [first second]", sink.ids)
	}
}

func TestPublisherGivesUpOnlyAtExit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nobody.sock")
	p := newPublisher("unix://"+path, "ns")
	p.Publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: "c", ID: "lost"})
	start := time.Now()
	p.Close(200 * time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("close took %v with a deadline of 200ms", d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) != 0 {
		t.Fatalf("queue not emptied (and logged) at exit: %d left", len(p.queue))
	}
}
