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

// TestWakeAfterSend: loops promised a Wake after each send, over TCP and
// Unix sockets on both brokers and both protocol versions. A subscriber
// gets every message of a publisher that awaits each one (requests from
// the test's goroutine, each followed by Wake); Close ends the
// publisher's run and the end of its context the subscriber's; nothing is
// left running.
func TestWakeAfterSend(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp", "unix"}, func(t *testing.T, b brokerCase) {
		ignore := append(leakcheck.Standard(), brokerGoroutines...)
		before := leakcheck.Snapshot()
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

// TestWakeAfterSendParksInPoller: a subscriber whose one request is sent
// before Run, fed by the embedded broker's inline client (no other socket
// in the process), waits for every message in the runtime's poller: its
// socket never joins the process's readiness set, as it would at its first
// select (the test fails with the option off). The end of its context ends
// the run from a park.
func TestWakeAfterSendParksInPoller(t *testing.T) {
	for _, wake := range []bool{true, false} {
		t.Run(fmt.Sprintf("WakeAfterSend=%v", wake), func(t *testing.T) {
			b := mqtttest.StartT(t, mqtttest.Options{InlineClient: true, DisableCapture: true})
			base := netio.RegisteredSockets()
			topic := uniqueID("poller")
			loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: uniqueID("poller"), WakeAfterSend: wake})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(testContext(t))
			reqs := make(chan eventloop.Request, 1)
			reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: 1}}}
			events := loop.Run(ctx, reqs)
			got := make(chan eventloop.Notification)
			ended := make(chan error, 1)
			go func() {
				for {
					n, err := events.Next()
					if err != nil {
						ended <- err
						return
					}
					got <- n
				}
			}()
			await := func(what string, ok func(eventloop.Notification) bool) {
				t.Helper()
				for {
					select {
					case n := <-got:
						if ok(n) {
							return
						}
					case err := <-ended:
						t.Fatalf("run ended waiting for %s: %v", what, err)
					}
				}
			}
			await("Subscribed", func(n eventloop.Notification) bool { _, ok := n.(eventloop.Subscribed); return ok })
			for i := range 50 {
				if err := b.Server().Publish(topic, fmt.Appendf(nil, "%d", i), false, byte(i%2)); err != nil {
					t.Fatal(err)
				}
				await(fmt.Sprintf("message %d", i), func(n eventloop.Notification) bool {
					m, ok := n.(eventloop.Message)
					if ok && string(m.Payload) != fmt.Sprint(i) {
						t.Fatalf("message %q, want %d", m.Payload, i)
					}
					return ok
				})
			}
			registered := netio.RegisteredSockets() - base
			cancel()
			for err := error(nil); err == nil; {
				select {
				case <-got: // Disconnected
				case err = <-ended:
					mustIs(t, err, eventloop.ErrStopped)
				}
			}
			if wake && registered != 0 {
				t.Errorf("%d sockets joined the readiness set: the loop waited for SIGIO", registered)
			}
			if !wake && registered != 1 {
				t.Errorf("without the option %d sockets joined the readiness set, want 1 (the test could not tell the waits apart)", registered)
			}
		})
	}
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
