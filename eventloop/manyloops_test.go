//go:build linux || darwin || freebsd || netbsd || dragonfly

package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
)

// TestManyLoopsShareReadiness runs 200 subscriber loops in this process,
// each on its own goroutine and its own topic, idle between messages, so
// that they all wait on the process's one readiness set. A publisher loop
// sends three QoS 1 messages to every topic, interleaved across topics.
// Every loop must get exactly its own three messages, in order (a lost
// wakeup leaves a loop waiting until the test's deadline). When the loops
// end, the readiness set holds nothing of theirs and no goroutine of
// theirs is left.
func TestManyLoopsShareReadiness(t *testing.T) {
	const loops, perLoop = 200, 3
	b := mqtttest.StartT(t, mqtttest.Options{DisableCapture: true})
	ignore := append(leakcheck.Standard(), brokerGoroutines...)
	before := leakcheck.Snapshot()
	baseSockets := netio.RegisteredSockets()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	prefix := uniqueID("many")

	type result struct {
		i   int
		err error
	}
	results := make(chan result, loops)
	subscribed := make(chan error, loops)
	stops := make([]context.CancelFunc, loops)
	for i := range loops {
		lctx, stop := context.WithCancel(ctx)
		stops[i] = stop
		topic := fmt.Sprintf("%s/%d", prefix, i)
		go func() {
			loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: fmt.Sprintf("%s-%d", prefix, i)})
			if err != nil {
				subscribed <- err
				return
			}
			reqs := make(chan eventloop.Request, 1)
			reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: 1}}}
			events := loop.Run(lctx, reqs)
			got := 0
			var fail error
			for {
				n, err := events.Next()
				if err != nil {
					if fail == nil && !errors.Is(err, eventloop.ErrStopped) {
						fail = err
					}
					if fail == nil && got != perLoop {
						fail = fmt.Errorf("loop %d ended with %d messages", i, got)
					}
					results <- result{i, fail}
					return
				}
				switch n := n.(type) {
				case eventloop.Subscribed:
					subscribed <- n.Err()
				case eventloop.Message:
					want := fmt.Sprintf("%d.%d", i, got)
					if n.Topic != topic || string(n.Payload) != want {
						fail = fmt.Errorf("loop %d: message %q on %q, want %q on %q", i, n.Payload, n.Topic, want, topic)
					}
					got++
					if got == perLoop {
						results <- result{i, fail}
					}
				}
			}
		}()
	}
	for range loops {
		if err := <-subscribed; err != nil {
			t.Fatal(err)
		}
	}

	pub := startClient(t, b.URL(), eventloop.Options{ClientID: prefix + "-pub"})
	for r := range perLoop {
		for j := range loops {
			i := (j*37 + r*11) % loops
			pub.send(eventloop.Publish{Topic: fmt.Sprintf("%s/%d", prefix, i), Payload: fmt.Appendf(nil, "%d.%d", i, r), QoS: 1})
		}
	}
	for range loops * perLoop {
		expect[eventloop.Published](pub)
	}
	pub.send(eventloop.Disconnect{})
	mustIs(t, pub.end(), eventloop.ErrDisconnected)
	for range loops {
		if r := <-results; r.err != nil {
			t.Error(r.err)
		}
	}
	if got := netio.RegisteredSockets(); got < baseSockets+loops {
		t.Errorf("%d sockets in the readiness set while %d loops wait, want at least %d", got, loops, baseSockets+loops)
	}
	for _, stop := range stops {
		stop()
	}
	for range loops {
		if r := <-results; r.err != nil {
			t.Error(r.err)
		}
	}
	if got := netio.RegisteredSockets(); got != baseSockets {
		t.Errorf("after the loops ended the readiness set holds %d sockets, want %d", got, baseSockets)
	}
	if gs := leakcheck.Wait(before, testTimeout, ignore...); len(gs) > 0 {
		t.Errorf("goroutines left after the loops ended:\n%s", leakcheck.Report(gs))
	}
}
