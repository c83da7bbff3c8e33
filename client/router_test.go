package client_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/client"
	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// routerFilters overlap: every message of routerTopic matches all three.
var routerFilters = []string{"orders/#", "orders/+/created", "orders/eu/+"}

const routerTopic = "orders/eu/created"

// checker records, per filter, the sequence numbers its handler saw, and
// fails on one out of order.
type checker struct {
	mu   sync.Mutex
	next map[string]int
	errs []error
	all  chan struct{} // closed when every filter saw want messages
	bad  chan struct{} // closed at the first error
	want int
}

func newChecker(want int) *checker {
	return &checker{next: map[string]int{}, all: make(chan struct{}), bad: make(chan struct{}), want: want}
}

func (c *checker) handler(filter string) client.Handler {
	return func(_ context.Context, m eventloop.Message) error {
		time.Sleep(100 * time.Microsecond) // a slow handler (work, not synchronization)
		n, err := strconv.Atoi(string(m.Payload))
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil || n != c.next[filter] {
			c.errs = append(c.errs, fmt.Errorf("%s: got %q, want %d", filter, m.Payload, c.next[filter]))
			if len(c.errs) == 1 {
				close(c.bad)
			}
			return nil
		}
		c.next[filter]++
		for _, f := range routerFilters {
			if c.next[f] < c.want {
				return nil
			}
		}
		close(c.all)
		return nil
	}
}

// TestRouterSlowHandlersManualAcks: 3 overlapping filters × 1,000 QoS 1
// messages into slow handlers, on mochi and mosquitto, handlers inline
// and on a bounded pool of the test's goroutines; each handler sees its
// messages exactly once, in order, and every message is acknowledged
// when its handlers returned. Against mosquitto the subscriber lets the
// broker have only 5 messages unacknowledged (ReceiveMaximum), so the run
// goes on only if acks flow while handlers work; mochi does not resume
// sending after its send quota ran out (it sends one held message per
// packet it reads), so there the test counts the PUBACKs instead. The
// same shape written by hand on the loop froze at 200 of 3,000 (issue 11).
func TestRouterSlowHandlersManualAcks(t *testing.T) {
	for _, name := range []string{"mochi", "mosquitto"} {
		for _, mode := range []string{"inline", "pool"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				leakcheck.VerifyNone(t)
				if name == "mochi" {
					b := mqtttest.StartT(t, mqtttest.Options{})
					routeOnce(t, b.URL(), mode, 0)
					// Every message acknowledged once.
					var after uint64
					for i := range 1000 {
						c, err := b.WaitMatch(testCtx(t), after, func(c mqtttest.Captured) bool {
							return c.ClientID == "router" && c.Direction == mqtttest.FromClient && c.Type == 4
						})
						if err != nil {
							t.Fatalf("PUBACK %d: %v", i+1, err)
						}
						after = c.Seq
					}
					return
				}
				// Room for every copy (one per subscription) while the
				// subscriber works: mosquitto drops beyond it.
				m := mosquitto.Start(t, mosquitto.Options{MaxQueuedMessages: 4000})
				routeOnce(t, m.URL(), mode, 5)
			})
		}
	}
}

func routeOnce(t *testing.T, url, mode string, receiveMax uint16) {
	ctx := testCtx(t)
	const n = 1000
	chk := newChecker(n)
	opts := client.Options{Loop: eventloop.Options{Servers: []string{url}, ClientID: "router", ReceiveMaximum: receiveMax}, QueueSize: 1}
	if mode == "pool" {
		// One worker per filter keeps each filter in order; the
		// unbuffered channels make Dispatch block while a worker is busy.
		work := map[string]chan func(){}
		var wg sync.WaitGroup
		for _, f := range routerFilters {
			ch := make(chan func())
			work[f] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				for task := range ch {
					task()
				}
			}()
		}
		t.Cleanup(func() {
			for _, ch := range work {
				close(ch)
			}
			wg.Wait()
		})
		opts.Dispatch = func(filter string, task func()) { work[filter] <- task }
	}
	sub := start(t, opts)
	for _, f := range routerFilters {
		if _, err := sub.Subscribe(ctx, eventloop.Filter{Topic: f, QoS: 1}, chk.handler(f)); err != nil {
			t.Fatal(err)
		}
	}
	pub := start(t, client.Options{Loop: eventloop.Options{Servers: []string{url}, ClientID: "router-pub"}})
	for i := range n {
		if _, err := pub.Publish(ctx, routerTopic, []byte(strconv.Itoa(i)), client.PublishOptions{QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-chk.all:
	case <-chk.bad:
	case <-ctx.Done():
		chk.mu.Lock()
		defer chk.mu.Unlock()
		t.Fatalf("stuck: handlers saw %v of %d each", chk.next, n)
	}
	chk.mu.Lock()
	defer chk.mu.Unlock()
	for _, err := range chk.errs {
		t.Error(err)
	}
}

// TestHandlerErrorNotAcked: a message whose handler fails (an error, then
// a panic) is not acknowledged, and the broker delivers it again after the
// next reconnect; it is acknowledged once the handler succeeds.
func TestHandlerErrorNotAcked(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	ctx := testCtx(t)
	var mu sync.Mutex
	var failures []error
	attempts := 0
	redelivered := make(chan eventloop.Message, 1)
	sub := start(t, client.Options{
		Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "failing", SessionExpiry: time.Hour, Reconnect: reconnect.Automatic, BackOff: quickBackOff()},
		HandlerError: func(filter string, m eventloop.Message, err error) {
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
			if err := b.DisconnectClient("failing", 0x8B); err != nil { // server shutting down: the client reconnects
				t.Error(err)
			}
		},
	})
	if _, err := sub.Subscribe(ctx, eventloop.Filter{Topic: "jobs", QoS: 1}, func(_ context.Context, m eventloop.Message) error {
		attempts++
		switch attempts {
		case 1:
			return errors.New("database down")
		case 2:
			panic("bug")
		}
		redelivered <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pub := start(t, client.Options{Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "failing-pub"}})
	if _, err := pub.Publish(ctx, "jobs", []byte("job 1"), client.PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	m := <-redelivered
	if string(m.Payload) != "job 1" || !m.Duplicate {
		t.Fatalf("third delivery: %q duplicate=%v, want job 1 redelivered", m.Payload, m.Duplicate)
	}
	if _, err := b.WaitMatch(ctx, 0, func(c mqtttest.Captured) bool {
		return c.ClientID == "failing" && c.Direction == mqtttest.FromClient && c.Type == 4 // PUBACK
	}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 2 || !errors.Is(failures[1], client.ErrHandlerPanic) {
		t.Fatalf("HandlerError saw %v, want an error then a panic", failures)
	}
	if n := b.Count("failing", mqtttest.FromClient, 4); n != 1 {
		t.Fatalf("%d PUBACKs from the subscriber, want 1", n)
	}
}

// TestRoutingSharedAndOverlapping: a shared subscription beside plain
// overlapping filters, with subscription identifiers and without them
// (the broker announcing it lacks them): each subscription's handler gets
// each message once, and SUBSCRIBE carries an identifier only when the
// broker supports them.
func TestRoutingSharedAndOverlapping(t *testing.T) {
	for _, noIDs := range []bool{false, true} {
		t.Run(fmt.Sprintf("noSubscriptionIDs=%v", noIDs), func(t *testing.T) {
			leakcheck.VerifyNone(t)
			b := mqtttest.StartT(t, mqtttest.Options{NoSubscriptionIdentifiers: noIDs})
			ctx := testCtx(t)
			c := start(t, client.Options{Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "overlap"}})
			var mu sync.Mutex
			got := map[string][]string{}
			filters := []string{"jobs/#", "jobs/+", "$share/workers/jobs/+", "other/#"}
			for _, f := range filters {
				if _, err := c.Subscribe(ctx, eventloop.Filter{Topic: f, QoS: 1}, func(_ context.Context, m eventloop.Message) error {
					mu.Lock()
					got[f] = append(got[f], string(m.Payload))
					mu.Unlock()
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{"jobs/1", "jobs/2", "jobs/a/b"} {
				if _, err := c.Publish(ctx, p, []byte(p), client.PublishOptions{QoS: 1}); err != nil {
					t.Fatal(err)
				}
			}
			// A last message through jobs/# marks the end: messages of one
			// publisher arrive in order.
			done := make(chan struct{})
			if _, err := c.Subscribe(ctx, eventloop.Filter{Topic: "end", QoS: 1}, func(context.Context, eventloop.Message) error { close(done); return nil }); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "end", nil, client.PublishOptions{QoS: 1}); err != nil {
				t.Fatal(err)
			}
			<-done
			mu.Lock()
			defer mu.Unlock()
			want := map[string][]string{
				"jobs/#":                {"jobs/1", "jobs/2", "jobs/a/b"},
				"jobs/+":                {"jobs/1", "jobs/2"},
				"$share/workers/jobs/+": {"jobs/1", "jobs/2"},
			}
			for _, f := range filters {
				if fmt.Sprint(got[f]) != fmt.Sprint(want[f]) {
					t.Errorf("%s got %q, want %q", f, got[f], want[f])
				}
			}
			for _, p := range b.Packets() {
				if p.ClientID == "overlap" && p.Direction == mqtttest.FromClient && p.Type == 8 {
					id := p.Packet.Properties.SubscriptionIdentifier
					if hasID := len(id) > 0 && id[0] != 0; hasID == noIDs {
						t.Errorf("SUBSCRIBE %v carries subscription identifier %v with the broker supporting them: %v", p.Packet.Filters, id, !noIDs)
					}
				}
			}
		})
	}
}
