package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestAckFromAnyGoroutine: 16 worker goroutines ack the messages the
// goroutine calling Next hands them, while the requests channel is full
// and not read (the loop is paused at MaxQueued). Every ack reaches the
// broker: on mochi the capture counts the PUBACKs; on both brokers a
// second loop resuming the session receives nothing again (a marker
// published after is the first message it gets). On mochi the run ends by
// its context while acks may still be pending: they go out before the
// DISCONNECT.
func TestAckFromAnyGoroutine(t *testing.T) {
	leakcheck.VerifyNone(t, brokerGoroutines...)
	mochi := mqtttest.StartT(t, mqtttest.Options{})
	t.Run("mochi", func(t *testing.T) { ackFromGoroutines(t, mochi.URL(), mochi) })
	t.Run("mosquitto", func(t *testing.T) {
		url := startMosquitto(t) // fails under CI if missing
		if url == "" {
			t.Skip("mosquitto not installed")
		}
		ackFromGoroutines(t, url, nil)
	})
}

func ackFromGoroutines(t *testing.T, url string, capture *mqtttest.Broker) {
	const workers, perWorker = 16, 50
	const total = workers * perWorker
	id := uniqueID("acker")
	opts := eventloop.Options{Servers: []string{url}, ClientID: id, ManualAcks: true, MaxQueued: 1, SessionExpiry: time.Hour}
	loop, err := eventloop.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	reqs := make(chan eventloop.Request, 8)
	events := loop.Run(ctx, reqs)
	reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "acks/#", QoS: 1}}}
	for {
		n, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := n.(eventloop.Subscribed); ok {
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	// Fill the requests channel: Pause, then publishes; the loop takes one
	// (MaxQueued) and reads no more.
	stopFill := make(chan struct{})
	var fill sync.WaitGroup
	fill.Add(1)
	go func() {
		defer fill.Done()
		reqs <- eventloop.Pause{}
		for {
			select {
			case reqs <- eventloop.Publish{Topic: "elsewhere", QoS: 1}:
			case <-stopFill:
				return
			}
		}
	}()
	defer fill.Wait()
	defer close(stopFill)

	pub := startClient(t, url, eventloop.Options{})
	for i := range total {
		pub.send(eventloop.Publish{Topic: fmt.Sprintf("acks/%d", i%7), Payload: []byte(fmt.Sprint(i)), QoS: 1})
	}

	work := make(chan eventloop.Message)
	ackErrs := make(chan error, total)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				if err := loop.Ack(m); err != nil {
					ackErrs <- err
				}
			}
		}()
	}
	got, queueFull := 0, false
	for got < total {
		n, err := events.Next()
		if err != nil {
			t.Fatalf("run ended after %d messages: %v", got, err)
		}
		switch n := n.(type) {
		case eventloop.Message:
			got++
			work <- n
		case eventloop.QueueFull:
			queueFull = true
		case eventloop.RequestFailed:
			t.Errorf("request failed: %#v: %v", n.Request, n.Err)
		}
	}
	close(work)
	wg.Wait() // every Ack returned; some may not be taken yet
	if len(reqs) != cap(reqs) || !queueFull {
		t.Errorf("requests channel holds %d of %d, QueueFull %v: the loop read it", len(reqs), cap(reqs), queueFull)
	}
	if capture == nil {
		// mosquitto reads a connection in order: a publish acknowledged
		// after the acks proves it read them. (Ending the run at once, a
		// resumed session could take over before mosquitto read the old
		// connection's last bytes; on mochi the capture proves them below.)
		loop.Resume()
		for {
			n, err := events.Next()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := n.(eventloop.Published); ok {
				break
			}
		}
	}
	cancel()
	for {
		n, err := events.Next()
		if err != nil {
			mustIs(t, err, eventloop.ErrStopped)
			break
		}
		if rf, ok := n.(eventloop.RequestFailed); ok {
			t.Errorf("request failed: %#v: %v", rf.Request, rf.Err)
		}
	}
	close(ackErrs)
	for err := range ackErrs {
		t.Errorf("Ack: %v", err)
	}
	// After the run, Ack refuses; a QoS 0 ack is a no-op.
	if err := loop.Ack(eventloop.Message{QoS: 1, PacketID: 1}); !errors.Is(err, eventloop.ErrNotRunning) {
		t.Errorf("Ack after the run: %v, want ErrNotRunning", err)
	}
	if err := loop.Ack(eventloop.Message{QoS: 0}); err != nil {
		t.Errorf("Ack of QoS 0: %v", err)
	}
	if capture != nil {
		var after uint64
		for i := range total {
			c, err := capture.WaitMatch(testContext(t), after, func(c mqtttest.Captured) bool {
				return c.ClientID == id && c.Direction == mqtttest.FromClient && c.Type == packets.PUBACK
			})
			if err != nil {
				t.Fatalf("after %d PUBACKs: %v", i, err)
			}
			after = c.Seq
		}
		if n := capture.Count(id, mqtttest.FromClient, packets.PUBACK); n != total {
			t.Errorf("broker received %d PUBACKs, want %d", n, total)
		}
	}

	// The session resumed: nothing is delivered again before a marker
	// published now.
	opts.MaxQueued = 0
	again := newClient(t, url, opts)
	if c := again.expectConnected(); !c.SessionPresent {
		t.Fatal("the broker did not keep the session")
	}
	pub.send(eventloop.Publish{Topic: "acks/marker", Payload: []byte("marker"), QoS: 1})
	m := expect[eventloop.Message](again)
	if m.Topic != "acks/marker" {
		t.Fatalf("resumed session received %s %q (dup %v) before the marker: an ack was lost", m.Topic, m.Payload, m.Duplicate)
	}
	if err := again.loop.Ack(m); err != nil {
		t.Fatal(err)
	}
}

// TestAckQoS0IsNoop: acking a QoS 0 message, through EventLoop.Ack or the
// channel, neither fails nor sends anything.
func TestAckQoS0IsNoop(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	c := startClient(t, b.URL(), eventloop.Options{ManualAcks: true})
	c.subscribe(eventloop.Filter{Topic: "q0", QoS: 0})
	c.send(eventloop.Publish{Topic: "q0", Payload: []byte("x")})
	m := expect[eventloop.Message](c)
	if m.QoS != 0 {
		t.Fatalf("QoS %d", m.QoS)
	}
	if err := c.loop.Ack(m); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	c.send(m.Ack())
	// A subscribe after the acks: had either failed, RequestFailed would
	// come first (expect fails on it).
	c.subscribe(eventloop.Filter{Topic: "after", QoS: 0})
}
