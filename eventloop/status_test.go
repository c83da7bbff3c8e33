package eventloop_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// TestStatus reads Status from the test's goroutine while another one
// drives the loop: the connection, the backlog (queued while paused, then
// in flight and done), traffic counters, a reconnect and the run's end.
func TestStatus(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("status")
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: id})
	if err != nil {
		t.Fatal(err)
	}
	if s := loop.Status(); s.Running || s.Connected || s.Connections != 0 || s.LastError != nil {
		t.Fatalf("status before Run: %+v", s)
	}
	c := newClient(t, b.URL(), eventloop.Options{ClientID: id, Reconnect: reconnect.AfterFirstSuccess, BackOff: quickBackOff()})
	c.expectConnected()
	s := c.loop.Status()
	if !s.Running || !s.Connected || s.Server != b.URL() || s.Transport != "tcp" || s.Connections != 1 || s.ConnectedSince.IsZero() {
		t.Fatalf("status when connected: %+v", s)
	}
	c.subscribe(eventloop.Filter{Topic: "status/#", QoS: 1})

	const k = 5
	c.send(eventloop.Pause{})
	for i := range k {
		c.send(eventloop.Publish{Topic: "status/t", Payload: []byte(fmt.Sprint("payload-", i)), QoS: 1})
	}
	if !leakcheck.Poll(testTimeout, func() bool { return c.loop.Status().Queued == k }) {
		t.Fatalf("status while paused: %+v, want %d queued", c.loop.Status(), k)
	}
	if s := c.loop.Status(); s.InFlight != 0 || s.MessagesOut != 0 {
		t.Fatalf("status while paused: %+v", s)
	}
	c.send(eventloop.Resume{})
	msgs, acks := 0, 0
	for msgs < k || acks < k {
		switch n := c.next().(type) {
		case eventloop.Message:
			msgs++
		case eventloop.Published:
			if n.Err != nil {
				t.Fatal(n.Err)
			}
			acks++
		}
	}
	s = c.loop.Status()
	if s.MessagesIn != k || s.MessagesOut != k || s.Queued != 0 || s.InFlight != 0 {
		t.Fatalf("status after %d publishes to itself: %+v", k, s)
	}
	// Each payload crossed the wire twice (out and back), in a PUBLISH
	// with its topic: the byte counts cover at least that.
	if min := uint64(k * (len("payload-0") + len("status/t"))); s.BytesIn < min || s.BytesOut < min {
		t.Fatalf("status after %d publishes: %d bytes in, %d out; want at least %d", k, s.BytesIn, s.BytesOut, min)
	}

	if err := b.DisconnectClient(id, 0x8B); err != nil {
		t.Fatal(err)
	}
	expect[eventloop.Disconnected](c)
	c.expectConnected()
	s = c.loop.Status()
	if !s.Connected || s.Connections != 2 || !errors.Is(s.LastError, eventloop.ErrBrokerDisconnect) {
		t.Fatalf("status after a reconnect: %+v", s)
	}

	c.cancel()
	mustIs(t, c.end(), eventloop.ErrStopped)
	s = c.loop.Status()
	if s.Running || s.Connected || !errors.Is(s.LastError, eventloop.ErrStopped) || s.Connections != 2 {
		t.Fatalf("status after the run: %+v", s)
	}
}

// BenchmarkStatus is the cost of one Status call (what a metrics poller
// pays), while the loop is connected and idle.
func BenchmarkStatus(b *testing.B) {
	br := mqtttest.StartT(b, mqtttest.Options{DisableCapture: true})
	loop, err := eventloop.New(eventloop.Options{Servers: []string{br.URL()}, ClientID: uniqueID("status-bench")})
	if err != nil {
		b.Fatal(err)
	}
	events := loop.Run(b.Context(), nil)
	if _, err := events.Next(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !loop.Status().Connected {
			b.Fatal("not connected")
		}
	}
	loop.Close()
	for {
		if _, err := events.Next(); err != nil {
			break
		}
	}
}
