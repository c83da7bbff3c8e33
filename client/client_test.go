package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/client"
	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// guard bounds a test's waits; reaching it is a failure (a hang), not a
// measurement.
const guard = 2 * time.Minute

// running is a Client whose Run is driven by a test goroutine.
type running struct {
	*client.Client
	cancel context.CancelFunc
	done   chan error
}

// start creates a client and runs it on a goroutine of the test; the
// cleanup ends the run and checks it ended.
func start(t *testing.T, opts client.Options) *running {
	t.Helper()
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the run and returns its error (once; later calls return nil).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(guard):
		t.Fatal("Run did not return after its context was cancelled")
		return nil
	}
}

func quickBackOff() backoff.BackOff { return &backoff.ConstantBackOff{Interval: 20 * time.Millisecond} }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

func TestPublishSubscribe(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	ctx := testCtx(t)
	c := start(t, client.Options{Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "ps"}})

	got := make(chan eventloop.Message, 10)
	if q, err := c.Subscribe(ctx, eventloop.Filter{Topic: "a/+", QoS: 2}, func(_ context.Context, m eventloop.Message) error {
		got <- m
		return nil
	}); err != nil || q != 2 {
		t.Fatalf("Subscribe = %d, %v; want 2, nil", q, err)
	}
	for qos := byte(0); qos <= 2; qos++ {
		code, err := c.Publish(ctx, "a/b", []byte{qos}, client.PublishOptions{QoS: qos})
		if err != nil || code != 0 {
			t.Fatalf("Publish QoS %d = %#x, %v", qos, code, err)
		}
		m := <-got
		if m.Topic != "a/b" || m.Payload[0] != qos || m.QoS != qos {
			t.Fatalf("received %+v, want QoS %d on a/b", m, qos)
		}
	}
	// Bad input: a clear error, nothing sent.
	if _, err := c.Publish(ctx, "a/+", nil, client.PublishOptions{}); !errors.Is(err, eventloop.ErrInvalidTopic) {
		t.Fatalf("Publish to a filter = %v, want ErrInvalidTopic", err)
	}
	if _, err := c.Publish(ctx, "a/b", nil, client.PublishOptions{QoS: 3}); !errors.Is(err, eventloop.ErrInvalidQoS) {
		t.Fatalf("Publish QoS 3 = %v, want ErrInvalidQoS", err)
	}
	if _, err := c.Subscribe(ctx, eventloop.Filter{Topic: "a/#/b"}, func(context.Context, eventloop.Message) error { return nil }); !errors.Is(err, eventloop.ErrInvalidTopic) {
		t.Fatalf("Subscribe to an invalid filter = %v, want ErrInvalidTopic", err)
	}
	if err := c.Unsubscribe(ctx, "a/+"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe(ctx, "a/+"); !errors.Is(err, client.ErrNotSubscribed) {
		t.Fatalf("second Unsubscribe = %v, want ErrNotSubscribed", err)
	}
	// The run ends: calls fail with ErrRunEnded wrapping the run's error.
	runErr := c.stop(t)
	if !errors.Is(runErr, eventloop.ErrStopped) {
		t.Fatalf("Run = %v, want ErrStopped", runErr)
	}
	if _, err := c.Publish(ctx, "a/b", nil, client.PublishOptions{QoS: 1}); !errors.Is(err, client.ErrRunEnded) || !errors.Is(err, eventloop.ErrStopped) {
		t.Fatalf("Publish after the run = %v, want ErrRunEnded and ErrStopped", err)
	}
}

// TestAwaitedPublishesThroughBrokerRestart: 8 goroutines × 2,000
// publishes (QoS 1, 2 and 0 by goroutine), each awaited; mosquitto
// restarts (losing every session) half-way. Every call returns once with
// its QoS's outcome, and the calls in flight at the restart complete after
// the reconnect.
func TestAwaitedPublishesThroughBrokerRestart(t *testing.T) {
	leakcheck.VerifyNone(t)
	m := mosquitto.Start(t, mosquitto.Options{})
	ctx := testCtx(t)
	var connects atomic.Int32
	c := start(t, client.Options{
		Loop: eventloop.Options{Servers: []string{m.URL()}, ClientID: "restart", Reconnect: reconnect.Automatic, BackOff: quickBackOff()},
		Notify: func(n eventloop.Notification) {
			if _, ok := n.(eventloop.Connected); ok {
				connects.Add(1)
			}
		},
	})
	const goroutines, each = 8, 2000
	var completed atomic.Int64
	half := make(chan struct{})
	restarted := make(chan struct{})
	var afterRestart atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// mosquitto acknowledges a message nobody subscribed to with
			// 0x10 (No matching subscribers), a success: in PUBACK for
			// QoS 1, in PUBREC for QoS 2, whose PUBCOMP then says 0.
			qos := []byte{1, 2, 0}[g%3]
			want := map[byte]byte{0: 0, 1: 0x10, 2: 0}[qos]
			for i := range each {
				code, err := c.Publish(ctx, fmt.Sprintf("load/%d", g), fmt.Appendf(nil, "%d", i), client.PublishOptions{QoS: qos})
				if err != nil || code != want {
					errs <- fmt.Errorf("goroutine %d publish %d: %#x, %v", g, i, code, err)
					return
				}
				if completed.Add(1) == goroutines*each/2 {
					close(half)
				}
				select {
				case <-restarted:
					afterRestart.Add(1)
				default:
				}
			}
		}()
	}
	select {
	case <-half:
		m.Restart()
		close(restarted)
	case err := <-errs:
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := completed.Load(); n != goroutines*each {
		t.Fatalf("%d publishes completed, want %d", n, goroutines*each)
	}
	if connects.Load() < 2 || afterRestart.Load() == 0 {
		t.Fatalf("%d connections, %d publishes completed after the restart: the restart was not crossed", connects.Load(), afterRestart.Load())
	}
}

// TestWaitersEndWithTheRun: publishes waiting while the broker is down
// (queued offline, or still on their way to the loop) all return when
// the run ends, with ErrRunEnded wrapping the run's error.
func TestWaitersEndWithTheRun(t *testing.T) {
	leakcheck.VerifyNone(t)
	m := mosquitto.Start(t, mosquitto.Options{})
	ctx := testCtx(t)
	c := start(t, client.Options{Loop: eventloop.Options{Servers: []string{m.URL()}, ClientID: "waiters", Reconnect: reconnect.Automatic, BackOff: quickBackOff()}})
	if _, err := c.Publish(ctx, "w", nil, client.PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := c.Publish(ctx, "w", nil, client.PublishOptions{QoS: byte(i % 3)})
			errs <- err
		}()
	}
	runErr := c.stop(t)
	for range n {
		err := <-errs
		if !errors.Is(err, client.ErrRunEnded) || !errors.Is(err, eventloop.ErrStopped) {
			t.Errorf("Publish = %v, want ErrRunEnded wrapping ErrStopped (run: %v)", err, runErr)
		}
	}
}
