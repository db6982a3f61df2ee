package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/podv2/containerd-shim-pod-v2/api/known/anypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/emptypb"
	"github.com/podv2/containerd-shim-pod-v2/api/known/timestamppb"
	eventsapi "github.com/podv2/containerd-shim-pod-v2/api/services/ttrpc/events/v1"
	"github.com/podv2/containerd-shim-pod-v2/api/types"

	"github.com/podv2/containerd-shim-pod-v2/fault"

	"github.com/podv2/containerd-shim-pod-v2/wire"
)

// publisher forwards events to containerd in the order they were published.
// An event that cannot be delivered is retried, holding back the ones behind
// it, until it goes through: order is never traded for liveness. What is
// still undelivered when the shim exits is logged, one line per event.
type publisher struct {
	address, namespace string

	// mu guards queue and closing; cond signals a change to either.
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*types.Envelope
	closing bool
	// deadline is when a closing publisher gives up.
	deadline time.Time

	done   chan struct{}
	client *ttrpc.Client // owned by the run goroutine
}

func newPublisher(address, namespace string) *publisher {
	p := &publisher{address: strings.TrimPrefix(address, unixScheme), namespace: namespace, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.run()
	return p
}

// Publish queues an event. It never blocks on containerd.
func (p *publisher) Publish(topic string, event interface{ ProtoName() string }) {
	value, err := wire.Marshal(event)
	if err != nil {
		slog.Error("cannot marshal event: dropped", "topic", topic, "error", err)
		return
	}
	env := &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.namespace,
		Topic:     topic,
		Event:     &anypb.Any{TypeUrl: event.ProtoName(), Value: value},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing && time.Now().After(p.deadline) {
		slog.Error("event not delivered: shim is exiting", "topic", topic, "event", describe(event))
		return
	}
	p.queue = append(p.queue, env)
	p.cond.Signal()
}

// Close delivers what is queued, for at most timeout, then stops.
func (p *publisher) Close(timeout time.Duration) {
	p.mu.Lock()
	p.closing = true
	p.deadline = time.Now().Add(timeout)
	p.cond.Broadcast()
	p.mu.Unlock()
	<-p.done
}

func (p *publisher) run() {
	defer close(p.done)
	defer func() {
		if p.client != nil {
			p.client.Close()
		}
	}()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closing {
			p.cond.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		env := p.queue[0]
		p.mu.Unlock()

		if !p.deliver(env) {
			p.dropAll()
			return
		}
		p.mu.Lock()
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
	}
}

// deliver retries one event until it is forwarded; false if the publisher
// closed and its deadline passed first.
func (p *publisher) deliver(env *types.Envelope) bool {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.forward(env)
		if err == nil {
			if attempt > 1 {
				slog.Info("event delivered after retries", "topic", env.Topic, "attempts", attempt)
			}
			return true
		}
		if attempt == 1 || attempt%20 == 0 {
			slog.Warn("event not delivered yet, retrying", "topic", env.Topic, "attempt", attempt, "error", err)
		}
		p.mu.Lock()
		expired := p.closing && time.Now().After(p.deadline)
		p.mu.Unlock()
		if expired {
			return false
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

func (p *publisher) forward(env *types.Envelope) error {
	if err := fault.Check("shim.publish"); err != nil {
		return err
	}
	if p.address == "" {
		return fmt.Errorf("no TTRPC_ADDRESS to publish to")
	}
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.address, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial containerd ttrpc %s: %w", p.address, err)
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Coded by wire, as the events are: no protobuf-go tables for them.
	err := p.client.Call(ctx, "containerd.services.events.ttrpc.v1.Events", "Forward",
		wire.Message(&eventsapi.ForwardRequest{Envelope: env}), wire.Message(&emptypb.Empty{}))
	if err != nil {
		p.client.Close()
		p.client = nil
	}
	return err
}

// dropAll logs every event that will never be delivered.
func (p *publisher) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, env := range p.queue {
		slog.Error("event not delivered: shim is exiting", "topic", env.Topic, "type", env.Event.GetTypeUrl(),
			"timestamp", env.Timestamp.AsTime().Format(time.RFC3339Nano))
	}
	p.queue = nil
}

func describe(m interface{ ProtoName() string }) string {
	return fmt.Sprintf("%s %+v", m.ProtoName(), m)
}
