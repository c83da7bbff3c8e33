package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestAckFromAnyGoroutine: 16 worker goroutines ack the messages the
// goroutine calling Next hands them, while the requests channel is full
// and not read (the loop is paused at MaxQueued): every PUBACK reaches the
// broker, none fails, and the channel stays full throughout.
func TestAckFromAnyGoroutine(t *testing.T) {
	leakcheck.VerifyNone(t, brokerGoroutines...)
	const workers, perWorker = 16, 50
	const total = workers * perWorker
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("acker")
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: id, ManualAcks: true, MaxQueued: 1})
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

	pub := startClient(t, b.URL(), eventloop.Options{})
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
	// The broker's count of PUBACKs ends the run once it reaches total.
	counted := make(chan error, 1)
	go func() {
		var after uint64
		for i := 0; i < total; i++ {
			c, err := b.WaitMatch(ctx, after, func(c mqtttest.Captured) bool {
				return c.ClientID == id && c.Direction == mqtttest.FromClient && c.Type == packets.PUBACK
			})
			if err != nil {
				counted <- fmt.Errorf("after %d PUBACKs: %w", i, err)
				return
			}
			after = c.Seq
		}
		counted <- nil
		cancel()
	}()

	got := 0
	for {
		n, err := events.Next()
		if err != nil {
			if !errors.Is(err, eventloop.ErrStopped) {
				t.Errorf("run ended with %v", err)
			}
			break
		}
		switch n := n.(type) {
		case eventloop.Message:
			got++
			work <- n
		case eventloop.RequestFailed:
			t.Errorf("request failed: %#v: %v", n.Request, n.Err)
		}
	}
	close(work)
	wg.Wait()
	close(ackErrs)
	for err := range ackErrs {
		t.Errorf("Ack: %v", err)
	}
	if err := <-counted; err != nil {
		t.Fatal(err)
	}
	if got != total {
		t.Errorf("received %d messages, want %d", got, total)
	}
	if n := b.Count(id, mqtttest.FromClient, packets.PUBACK); n != total {
		t.Errorf("broker received %d PUBACKs, want %d", n, total)
	}
	if len(reqs) != cap(reqs) {
		t.Errorf("requests channel holds %d of %d: the loop read it", len(reqs), cap(reqs))
	}
	// After the run, Ack refuses; a QoS 0 ack is a no-op.
	if err := loop.Ack(eventloop.Message{QoS: 1, PacketID: 1}); !errors.Is(err, eventloop.ErrNotRunning) {
		t.Errorf("Ack after the run: %v, want ErrNotRunning", err)
	}
	if err := loop.Ack(eventloop.Message{QoS: 0}); err != nil {
		t.Errorf("Ack of QoS 0: %v", err)
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
