package eventloop_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// nextOf calls NextContext with ctx until a notification of type T.
func nextOf[T eventloop.Notification](t *testing.T, ctx context.Context, events *eventloop.Events) T {
	t.Helper()
	for {
		n, err := events.NextContext(ctx)
		if err != nil {
			t.Fatalf("waiting for %T: %v", *new(T), err)
		}
		if v, ok := n.(T); ok {
			return v
		}
		if rf, ok := n.(eventloop.RequestFailed); ok {
			t.Fatalf("request failed: %v", rf.Err)
		}
	}
}

// waitEnds calls NextContext with a context that some other goroutine
// cancels once ready returns, and checks that the wait ends with
// ErrWaitEnded (the loop, with nothing to do, is parked by then or about
// to park: only the wait's context can wake it).
func waitEnds(t *testing.T, events *eventloop.Events, ready func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		failed <- ready()
		cancel()
	}()
	n, err := events.NextContext(ctx)
	if rerr := <-failed; rerr != nil {
		t.Fatal(rerr)
	}
	if n != nil || !errors.Is(err, eventloop.ErrWaitEnded) || !errors.Is(err, context.Canceled) {
		t.Fatalf("NextContext: %v, %v; want ErrWaitEnded wrapping Canceled", n, err)
	}
}

// TestNextContextTimesOutAndContinues: on one goroutine, a wait with a
// deadline ends with ErrWaitEnded while nothing happens, and the run goes
// on: calls with an ended context poll and receive the message published
// meanwhile, and the run still ends only by its own context.
func TestNextContextTimesOutAndContinues(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("waiter")
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: id})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(testContext(t))
	defer stop()
	reqs := make(chan eventloop.Request, 4)
	events := loop.Run(runCtx, reqs)
	ctx := testContext(t)
	nextOf[eventloop.Connected](t, ctx, events)
	reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "wait/#", QoS: 1}}}
	nextOf[eventloop.Subscribed](t, ctx, events)

	// A deadline already past returns at once, again and again.
	for range 3 {
		short, cancel := context.WithTimeout(ctx, 0)
		n, err := events.NextContext(short)
		cancel()
		if n != nil || !errors.Is(err, eventloop.ErrWaitEnded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("NextContext after its deadline: %v, %v; want ErrWaitEnded wrapping DeadlineExceeded", n, err)
		}
	}
	// A wait the loop parks in: it ends when its context does. The loop
	// sends a QoS 0 publish nobody receives, and the wait is cancelled once
	// the broker has it: there is nothing else to wake the loop.
	reqs <- eventloop.Publish{Topic: "nobody", Payload: []byte("x")}
	waitEnds(t, events, func() error {
		_, err := b.WaitPacket(ctx, id, mqtttest.FromClient, packets.PUBLISH)
		return err
	})

	// The run goes on: a publish sent now arrives. Calls with a context
	// that has ended poll: the loop works without waiting, and returns
	// what is ready (a caller whose deadline passed is not stuck).
	ended, cancelEnded := context.WithCancel(ctx)
	cancelEnded()
	reqs <- eventloop.Publish{Topic: "wait/x", Payload: []byte("hi"), QoS: 1}
	var gotMsg, gotAck bool
	for !gotMsg || !gotAck { // in either order
		n, err := events.NextContext(ended)
		if errors.Is(err, eventloop.ErrWaitEnded) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		switch n := n.(type) {
		case eventloop.Message:
			if string(n.Payload) != "hi" {
				t.Fatalf("payload %q", n.Payload)
			}
			gotMsg = true
		case eventloop.Published:
			gotAck = true
		}
	}

	stop()
	for {
		_, err := events.Next()
		if err != nil {
			if !errors.Is(err, eventloop.ErrStopped) {
				t.Fatalf("run ended with %v, want ErrStopped", err)
			}
			break
		}
	}
}

// TestNextContextWhileReconnecting: a wait during the back-off before
// the next connection attempt ends with its context, and the run goes on
// (Close ends it).
func TestNextContextWhileReconnecting(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("waiter")
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: id,
		Reconnect: reconnect.AfterFirstSuccess, BackOff: &backoff.ConstantBackOff{Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	events := loop.Run(testContext(t), nil)
	ctx := testContext(t)
	nextOf[eventloop.Connected](t, ctx, events)
	if err := b.DisconnectClient(id, 0x8B); err != nil {
		t.Fatal(err)
	}
	nextOf[eventloop.Reconnecting](t, ctx, events)
	waitEnds(t, events, func() error { return nil })
	loop.Close()
	for {
		_, err := events.Next()
		if err != nil {
			if !errors.Is(err, eventloop.ErrStopped) {
				t.Fatalf("run ended with %v, want ErrStopped", err)
			}
			break
		}
	}
}
