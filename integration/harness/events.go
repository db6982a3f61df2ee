package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Event is one line of `ctr events`:
//
//	2026-11-22 13:17:32.449177734 +0000 UTC <namespace> /tasks/create {"container_id":"t2",...}
//
// The line format is the same under ctr 1.6 and 2.4; the JSON differs in places (1.6 prints timestamps such as
// exited_at as RFC 3339 strings, 2.4 as {"seconds":..,"nanos":..}).
type Event struct {
	Line      string
	Namespace string
	Topic     string
	Payload   map[string]any
}

// Str is a string field of the payload ("" if absent).
func (e Event) Str(key string) string {
	s, _ := e.Payload[key].(string)
	return s
}

// Num is a numeric field of the payload (-1 if absent: protobuf JSON omits zero values, so use NumOr0 for those).
func (e Event) Num(key string) float64 {
	v, ok := e.Payload[key].(float64)
	if !ok {
		return -1
	}
	return v
}

// NumOr0 is a numeric field of the payload, 0 if absent (JSON of protobuf messages omits zero values).
func (e Event) NumOr0(key string) float64 {
	v, _ := e.Payload[key].(float64)
	return v
}

func (e Event) String() string { return e.Topic + " " + payloadString(e.Payload) }

func payloadString(p map[string]any) string {
	b, _ := json.Marshal(p)
	return string(b)
}

var eventLine = regexp.MustCompile(`^(.+?) (\S+) (/[A-Za-z0-9/_-]+) (\{.*\})\s*$`)

// ParseEvent parses a line of `ctr events`.
func ParseEvent(line string) (Event, bool) {
	m := eventLine.FindStringSubmatch(line)
	if m == nil {
		return Event{}, false
	}
	e := Event{Line: line, Namespace: m[2], Topic: m[3]}
	if err := json.Unmarshal([]byte(m[4]), &e.Payload); err != nil {
		return Event{}, false
	}
	return e, true
}

// Events collects the output of `ctr events`.
type Events struct {
	c      *Containerd
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []Event // of this daemon's namespace
	lines  []string
	stderr bytes.Buffer
	wake   chan struct{}
	done   chan struct{}
}

// Events starts `ctr events` and returns once it is subscribed (a namespace created for the purpose shows up in its
// output); it is stopped when t ends.
func (c *Containerd) Events(t testing.TB) *Events {
	t.Helper()
	s := &Events{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	cmd := exec.Command(c.Flavour.Ctr, "--address", c.Address, "events")
	cmd.Env = filterEnv(os.Environ(), "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	t.Cleanup(s.Stop)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			if e, ok := ParseEvent(line); ok && e.Namespace == c.Namespace || ok && strings.HasPrefix(e.Topic, "/namespaces/") {
				s.events = append(s.events, e)
			}
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
	}()

	// Subscribed yet? Make an event and wait for it.
	marker := c.Namespace + "-events-" + randomHex(3)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.CtrWith(CtrOpts{Namespace: marker}, "namespaces", "create", marker)
		if _, ok := s.WaitFor(time.Second, func(e Event) bool {
			return e.Topic == "/namespaces/create" && e.Str("name") == marker
		}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctr events showed no /namespaces/create for %s within 15 s; output: %q stderr: %q", marker, s.Lines(), s.stderr.String())
		}
		c.CtrWith(CtrOpts{Namespace: marker}, "namespaces", "rm", marker)
	}
	c.CtrWith(CtrOpts{Namespace: marker}, "namespaces", "rm", marker)
	return s
}

// Stop stops `ctr events`.
func (s *Events) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// All returns the events of this daemon's namespace so far.
func (s *Events) All() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events {
		if e.Namespace == s.c.Namespace {
			out = append(out, e)
		}
	}
	return out
}

// Lines returns every line `ctr events` printed so far.
func (s *Events) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Task returns the /tasks/* events of container id, in order.
func (s *Events) Task(id string) []Event {
	var out []Event
	for _, e := range s.All() {
		if strings.HasPrefix(e.Topic, "/tasks/") && e.Str("container_id") == id {
			out = append(out, e)
		}
	}
	return out
}

// Topics are the topics of events.
func Topics(events []Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Topic
	}
	return out
}

// WaitFor waits until an event (of any namespace seen) satisfies pred.
func (s *Events) WaitFor(timeout time.Duration, pred func(Event) bool) (Event, bool) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if pred(e) {
				s.mu.Unlock()
				return e, true
			}
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.done:
			return Event{}, false
		case <-deadline:
			return Event{}, false
		}
	}
}

// MustWaitFor fails t unless an event satisfying pred arrives within timeout.
func (s *Events) MustWaitFor(t testing.TB, timeout time.Duration, what string, pred func(Event) bool) Event {
	t.Helper()
	e, ok := s.WaitFor(timeout, pred)
	if !ok {
		t.Fatalf("no event %s within %v; events of the namespace: %s", what, timeout, s.Dump())
	}
	return e
}

// Dump formats the events of the namespace for a failure message.
func (s *Events) Dump() string {
	var b strings.Builder
	for _, e := range s.All() {
		fmt.Fprintf(&b, "\n  %s", e)
	}
	return b.String()
}
