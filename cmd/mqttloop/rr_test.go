package main

import (
	"context"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// responder answers requests on topic with the payload upper-cased, on the
// request's response topic with its correlation data, until the test ends.
// It returns once subscribed.
func responder(t *testing.T, url, topic string) {
	t.Helper()
	loop, err := eventloop.New(eventloop.Options{Servers: []string{url}, ClientID: "responder-" + strings.ReplaceAll(t.Name(), "/", "-"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	requests := make(chan eventloop.Request, 16)
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: 1}}}
	ready, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		events := loop.Run(ctx, requests)
		for {
			ev, err := events.Next()
			if err != nil {
				ready <- err
				return
			}
			switch ev := ev.(type) {
			case eventloop.Subscribed:
				ready <- ev.Err()
			case eventloop.Message:
				if ev.Properties == nil || ev.Properties.ResponseTopic == "" {
					continue
				}
				requests <- eventloop.Publish{Topic: ev.Properties.ResponseTopic, QoS: 1,
					Payload:    []byte(strings.ToUpper(string(ev.Payload))),
					Properties: &eventloop.Properties{CorrelationData: ev.Properties.CorrelationData}}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := <-ready; err != nil {
		t.Fatalf("responder: %v", err)
	}
}

// TestRR: a request gets its response, on the embedded broker (over QUIC
// too) and on mosquitto; without a responder rr times out with exit 4.
func TestRR(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	m := mosquitto.Start(t, mosquitto.Options{})
	ca := caFile(t)
	for name, url := range map[string]string{"embedded": b.URL(), "embedded-quic": b.QUICURL(), "mosquitto": m.URL()} {
		t.Run(name, func(t *testing.T) {
			plain := url
			if name == "embedded-quic" {
				plain = b.URL()
			}
			responder(t, plain, "svc/upper")
			r := mustRun(t, exitOK, "rr", "-L", url, "--cafile", ca, "-t", "svc/upper", "-m", "hello", "-W", "120")
			if r.stdout != "HELLO\n" {
				t.Fatalf("rr printed %q", r.stdout)
			}
			r = mustRun(t, exitOK, "rr", "-L", url, "--cafile", ca, "-t", "svc/upper", "-e", "my/reply", "-m", "x", "-v", "-W", "120")
			if r.stdout != "my/reply X\n" {
				t.Fatalf("rr -e printed %q", r.stdout)
			}
		})
	}
	r := mustRun(t, exitTimeout, "rr", "-L", b.URL(), "-t", "svc/nobody", "-m", "x", "-W", "1")
	if !strings.Contains(r.stderr, "no response") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	mustRun(t, exitUsage, "rr", "-L", b.URL(), "-t", "svc/upper", "-m", "x", "-V", "311")
}
