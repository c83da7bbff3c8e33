package eventloop_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

// brokerGoroutines are goroutines of the in-process embedded broker, which
// serves connections with goroutines of its own; they are not the loop's.
//
// The last pattern is quic-go's timer that forgets a closed connection's
// ids a few seconds after the close: one left by an earlier QUIC test may
// fire during any later test.
var brokerGoroutines = []string{"mochi-mqtt/server", "mqtttest", "quic-go.(*packetHandlerMap).ReplaceWithClosed"}

// quicGoroutines are quic-go's own goroutines (4 or so per connection,
// plus its transport's): the dependency's, allowed beside the loop.
const quicGoroutines = "github.com/quic-go/quic-go"

// TestRunStartsNoGoroutine drives a loop through connect, subscribe,
// publish at every QoS, a keepalive exchange and disconnect, all on the
// test's goroutine, and shows with goroutine profiles taken at every step
// (and from inside the loop while it handles PINGRESP) that Run and Next
// started no goroutine. Afterwards nothing of the loop is left running.
//
// The only goroutine allowed is the one os/signal starts once per process
// at its first signal.Notify (the SIGIO readiness uses it); it is not per
// connection and never grows.
func TestRunStartsNoGoroutine(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		ignore := append(leakcheck.Standard(), brokerGoroutines...)
		// Over QUIC, quic-go runs goroutines of its own while connected;
		// they must be gone after the run like everything else.
		during := ignore
		if b.transport == "quic" {
			during = append(slices.Clip(ignore), quicGoroutines)
		}
		before := leakcheck.Snapshot()
		check := func(stage string) {
			t.Helper()
			if gs := leakcheck.Started(before, leakcheck.Snapshot(), during...); len(gs) > 0 {
				t.Fatalf("%s: the loop started goroutines:\n%s", stage, leakcheck.Report(gs))
			}
		}

		reqs := make(chan eventloop.Request, 16)
		topic := uniqueID("nogo")
		// The logger runs inside Next, on this goroutine: when PINGRESP
		// arrives it takes a profile and queues a publish, so that Next
		// returns after the keepalive exchange.
		var inKeepalive []leakcheck.Goroutine
		pinged := false
		logger := slog.New(handlerFunc(func(r slog.Record) {
			if pinged || recordType(r) != "PINGRESP" {
				return
			}
			pinged = true
			inKeepalive = leakcheck.Started(before, leakcheck.Snapshot(), during...)
			reqs <- eventloop.Publish{Topic: topic + "/after-ping", QoS: 1, Tag: "after-ping"}
		}))
		// KeepAlive 2 s: mochi allows 1.5 times the keepalive in whole
		// seconds, so at 1 s it gives no margin at all over the 0.75 s ping.
		loop, err := eventloop.New(b.options(eventloop.Options{ClientID: uniqueID("nogo"), KeepAlive: 2 * time.Second, Logger: logger}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		events := loop.Run(ctx, reqs)
		check("Run")
		next := func() eventloop.Notification {
			t.Helper()
			n, err := events.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			check("Next")
			return n
		}
		if _, ok := next().(eventloop.Connected); !ok {
			t.Fatal("first notification is not Connected")
		}
		reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic + "/#", QoS: 2}}}
		for {
			if _, ok := next().(eventloop.Subscribed); ok {
				break
			}
		}
		for q := byte(0); q <= 2; q++ {
			reqs <- eventloop.Publish{Topic: topic + "/x", QoS: q, Payload: []byte{q}}
		}
		msgs, acks := 0, 0
		for msgs < 3 || acks < 2 {
			switch next().(type) {
			case eventloop.Message:
				msgs++
			case eventloop.Published:
				acks++
			}
		}
		// Idle until the keepalive exchange queues the publish.
		for {
			if p, ok := next().(eventloop.Published); ok && p.Request.Tag == "after-ping" {
				break
			}
		}
		if !pinged {
			t.Fatal("no PINGRESP seen")
		}
		if len(inKeepalive) > 0 {
			t.Fatalf("during keepalive: the loop started goroutines:\n%s", leakcheck.Report(inKeepalive))
		}
		reqs <- eventloop.Disconnect{}
		for {
			_, err := events.Next()
			if err != nil {
				if !errors.Is(err, eventloop.ErrDisconnected) {
					t.Fatalf("run ended with %v", err)
				}
				break
			}
		}
		if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
			t.Fatalf("left running after the run:\n%s", leakcheck.Report(left))
		}
	})
}

// TestNothingLeftAfterRuns ends runs in every way (requests done, context
// cancelled, Close, connection lost) and checks no goroutine is left.
func TestNothingLeftAfterRuns(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		ignore := append(leakcheck.Standard(), brokerGoroutines...)
		before := leakcheck.Snapshot()
		for i := 0; i < 5; i++ {
			loop, err := eventloop.New(b.options(eventloop.Options{ClientID: uniqueID("left")}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			reqs := make(chan eventloop.Request, 4)
			events := loop.Run(ctx, reqs)
			if _, err := events.Next(); err != nil {
				t.Fatal(err)
			}
			switch i {
			case 0:
				reqs <- eventloop.Publish{Topic: "left/x", QoS: 1}
				close(reqs)
			case 1:
				cancel()
			case 2:
				loop.Close()
			case 3:
				reqs <- eventloop.Disconnect{}
			case 4:
				// A publish to an invalid topic and then the end.
				reqs <- eventloop.Publish{Topic: "bad/#", QoS: 1}
				close(reqs)
			}
			for {
				if _, err := events.Next(); err != nil {
					break
				}
			}
			cancel()
		}
		if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
			t.Fatalf("left running:\n%s", leakcheck.Report(left))
		}
	})
}

type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error {
	h(r)
	return nil
}
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h handlerFunc) WithGroup(string) slog.Handler      { return h }

func recordType(r slog.Record) string {
	var typ string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "type" {
			typ = a.Value.String()
			return false
		}
		return true
	})
	return typ
}

// TestQUICStreamsAndMigrationStartNoGoroutine covers what the QUIC
// transport adds: a run in multi-stream mode (subscriptions and publishes
// on two data streams and the control stream) that changes network path
// twice, once asked for and once after its path went silent, takes
// goroutine profiles at every notification: only quic-go's goroutines are
// new (its per-path receive loops included), and none is left after.
func TestQUICStreamsAndMigrationStartNoGoroutine(t *testing.T) {
	_, p := quicProxy(t)
	ignore := append(leakcheck.Standard(), brokerGoroutines...)
	ignore = append(ignore, "udpproxy")
	during := append(slices.Clip(ignore), quicGoroutines)
	before := leakcheck.Snapshot()

	loop, err := eventloop.New(quicOptions(eventloop.Options{
		Servers:     []string{p.URL()},
		ClientID:    uniqueID("nogo-streams"),
		QUICStreams: byTopic,
		Logger:      debugLogger(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan eventloop.Request, 16)
	events := loop.Run(testContext(t), reqs)
	next := func() eventloop.Notification {
		t.Helper()
		n, err := events.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if gs := leakcheck.Started(before, leakcheck.Snapshot(), during...); len(gs) > 0 {
			t.Fatalf("after %T the loop started goroutines:\n%s", n, leakcheck.Report(gs))
		}
		return n
	}
	if _, ok := next().(eventloop.Connected); !ok {
		t.Fatal("first notification is not Connected")
	}
	base := uniqueID("nogo-streams")
	for _, s := range []string{"/a/#", "/b/#", "/c/#"} {
		reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: base + s, QoS: 2}}}
	}
	for subs := 0; subs < 3; {
		if s, ok := next().(eventloop.Subscribed); ok {
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			subs++
		}
	}
	exchange := func() {
		t.Helper()
		for _, s := range []string{"/a/x", "/b/x", "/c/x"} {
			reqs <- eventloop.Publish{Topic: base + s, QoS: 2, Payload: []byte(s)}
		}
		for msgs, acks := 0, 0; msgs < 3 || acks < 3; {
			switch n := next().(type) {
			case eventloop.Message:
				msgs++
			case eventloop.Published:
				acks++
			case eventloop.RequestFailed:
				t.Fatal(n.Err)
			}
		}
	}
	exchange()
	loop.Handover()
	var cur netip.AddrPort
	for {
		if pc, ok := next().(eventloop.PathChanged); ok {
			cur = proxiedAddr(pc.NewLocal)
			if pc.Trigger == eventloop.PathHandover {
				break
			}
		}
	}
	exchange()
	// Silence the path: the loop must notice and move. (If it moved by
	// itself just before, silence the new path too.)
	p.Blackhole(cur, true)
	reqs <- eventloop.Publish{Topic: base + "/a/y", QoS: 1}
	for {
		if pc, ok := next().(eventloop.PathChanged); ok {
			if proxiedAddr(pc.OldLocal) == cur {
				break
			}
			cur = proxiedAddr(pc.NewLocal)
			p.Blackhole(cur, true)
		}
	}
	exchange()
	reqs <- eventloop.Disconnect{}
	for {
		if _, err := events.Next(); err != nil {
			mustIs(t, err, eventloop.ErrDisconnected)
			break
		}
	}
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
		t.Fatalf("left running after the run:\n%s", leakcheck.Report(left))
	}
}

// debugLogger logs every record to stderr when MQTTLOOP_TEST_DEBUG is
// set (nil otherwise).
func debugLogger() *slog.Logger {
	if os.Getenv("MQTTLOOP_TEST_DEBUG") == "" {
		return nil
	}
	return newTestLogger()
}
