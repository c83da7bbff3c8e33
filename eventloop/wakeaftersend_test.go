//go:build linux || darwin || freebsd || netbsd || dragonfly

package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
)

// TestWakeAfterSend: loops promised a Wake after each send wait for the
// broker in the runtime's poller. A subscriber gets every message of a
// publisher that awaits each one, over TCP and Unix sockets on both
// brokers and both protocol versions; neither loop ever joins the
// process's readiness set (they never wait for SIGIO); Close ends the
// publisher's run and the end of its context the subscriber's, each from
// a park; nothing is left running.
func TestWakeAfterSend(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp", "unix"}, func(t *testing.T, b brokerCase) {
		ignore := append(leakcheck.Standard(), brokerGoroutines...)
		before := leakcheck.Snapshot()
		base := netio.RegisteredSockets()
		topic := uniqueID("wake")
		sub := b.start(t, eventloop.Options{WakeAfterSend: true})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		pub := b.start(t, eventloop.Options{WakeAfterSend: true})
		const n = 200
		for i := range n {
			pub.send(eventloop.Publish{Topic: topic, Payload: fmt.Appendf(nil, "%d", i), QoS: byte(i % 2)})
			if i%2 == 1 {
				expect[eventloop.Published](pub)
			}
			m := expect[eventloop.Message](sub)
			if string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("message %q, want %d", m.Payload, i)
			}
		}
		if got := netio.RegisteredSockets(); got != base {
			t.Errorf("%d sockets in the readiness set, want %d: a loop waited for SIGIO", got, base)
		}
		if err := pub.loop.Close(); err != nil {
			t.Fatal(err)
		}
		mustIs(t, pub.end(), eventloop.ErrStopped)
		sub.cancel()
		mustIs(t, sub.end(), eventloop.ErrStopped)
		if gs := leakcheck.Wait(before, testTimeout, ignore...); len(gs) > 0 {
			t.Errorf("goroutines left after the runs ended:\n%s", leakcheck.Report(gs))
		}
	})
}

// TestWakeAfterSendAckFromAnotherGoroutine: with manual acks, a parked
// loop is woken by Ack from another goroutine and sends the PUBACK (the
// broker records it) without any other event to wake it.
func TestWakeAfterSendAckFromAnotherGoroutine(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	topic := uniqueID("wake-ack")
	id := uniqueID("wake-ack-sub")
	sub := startClient(t, b.URL(), eventloop.Options{ClientID: id, WakeAfterSend: true, ManualAcks: true})
	sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	pub := startClient(t, b.URL(), eventloop.Options{WakeAfterSend: true})
	for i := range 20 {
		pub.send(eventloop.Publish{Topic: topic, Payload: fmt.Appendf(nil, "%d", i), QoS: 1})
		expect[eventloop.Published](pub)
		m := expect[eventloop.Message](sub)
		after := b.LastSeq()
		acked := make(chan error, 1)
		go func() { acked <- sub.loop.Ack(m) }()
		if err := <-acked; err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		_, err := b.WaitPacketAfter(ctx, after, id, mqtttest.FromClient, packets.PUBACK)
		cancel()
		if err != nil {
			t.Fatalf("message %d: no PUBACK after Ack from another goroutine: %v", i, err)
		}
	}
}

// TestWakeAfterSendUnbuffered: with an unbuffered requests channel the
// promise cannot be kept (the send waits for the loop), so the loop keeps
// watching the channel: requests sent without Wake are taken.
func TestWakeAfterSendUnbuffered(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: uniqueID("unbuffered"), WakeAfterSend: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	reqs := make(chan eventloop.Request)
	events := loop.Run(ctx, reqs)
	sent := make(chan error, 1)
	go func() {
		for i := range 10 {
			select {
			case reqs <- eventloop.Publish{Topic: "unbuffered", Payload: []byte{byte(i)}, QoS: 1}:
			case <-ctx.Done():
				sent <- ctx.Err()
				return
			}
		}
		close(reqs)
		sent <- nil
	}()
	published := 0
	for {
		n, err := events.Next()
		if errors.Is(err, eventloop.ErrRequestsDone) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := n.(eventloop.Published); ok && p.Err == nil {
			published++
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if published != 10 {
		t.Fatalf("%d of 10 publishes completed", published)
	}
}
