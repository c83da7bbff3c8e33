package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/client"
	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// responder answers requests on topic with "re:" + payload, after hold
// returns (nil: at once).
func responder(t *testing.T, url, topicName string, hold func(m eventloop.Message)) *running {
	t.Helper()
	r := start(t, client.Options{Loop: eventloop.Options{Servers: []string{url}, ClientID: "responder"}})
	if _, err := r.Subscribe(testCtx(t), eventloop.Filter{Topic: topicName, QoS: 1}, func(ctx context.Context, m eventloop.Message) error {
		if hold != nil {
			hold(m)
		}
		_, err := r.Respond(ctx, m, append([]byte("re:"), m.Payload...), client.PublishOptions{QoS: 1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRequestResponse(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{ResponseInformation: "rr/base/"})
	ctx := testCtx(t)
	responder(t, b.URL(), "svc/echo", nil)
	var unrouted []eventloop.Message
	c := start(t, client.Options{
		Loop:     eventloop.Options{Servers: []string{b.URL()}, ClientID: "requester"},
		Unrouted: func(_ context.Context, m eventloop.Message) error { unrouted = append(unrouted, m); return nil },
	})
	for i := range 20 {
		m, err := c.Request(ctx, "svc/echo", fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("re:%d", i); string(m.Payload) != want {
			t.Fatalf("response %q, want %q", m.Payload, want)
		}
		if m.Topic != "rr/base/responses" {
			t.Fatalf("response on %q, want the broker's Response Information + responses", m.Topic)
		}
	}
	if c.Waiting() != 0 || len(unrouted) != 0 {
		t.Fatalf("%d waiters left, %d unrouted messages", c.Waiting(), len(unrouted))
	}
}

// TestRequestTimeoutLateReply: a request whose response comes after its
// deadline returns the context's error; the late response is dropped
// (not handed to the next request, not unrouted) and no waiter is left.
func TestRequestTimeoutLateReply(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	ctx := testCtx(t)
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	responder(t, b.URL(), "svc/slow", func(m eventloop.Message) {
		if string(m.Payload) == "late" {
			held <- struct{}{}
			<-release
		}
	})
	unrouted := make(chan eventloop.Message, 1)
	c := start(t, client.Options{
		Loop:     eventloop.Options{Servers: []string{b.URL()}, ClientID: "requester"},
		Unrouted: func(_ context.Context, m eventloop.Message) error { unrouted <- m; return nil },
	})
	// The deadline ends while the responder holds the request.
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		<-held
		cancel()
	}()
	_, err := c.Request(rctx, "svc/slow", []byte("late"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Request = %v, want context.Canceled", err)
	}
	if c.Waiting() != 0 {
		t.Fatalf("%d waiters left after the timeout", c.Waiting())
	}
	close(release) // the late response goes out now, before the next response
	m, err := c.Request(ctx, "svc/slow", []byte("next"))
	if err != nil || string(m.Payload) != "re:next" {
		t.Fatalf("next Request = %q, %v; want re:next", m.Payload, err)
	}
	select {
	case m := <-unrouted:
		t.Fatalf("late response reached Unrouted: %q", m.Payload)
	default:
	}
	// A deadline with nobody answering at all.
	dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer dcancel()
	if _, err := c.Request(dctx, "svc/nobody", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request to nobody = %v, want DeadlineExceeded", err)
	}
	if c.Waiting() != 0 {
		t.Fatalf("%d waiters left", c.Waiting())
	}
}

// TestRequestRunEnds: a request waiting when the run ends returns
// ErrRunEnded with the run's error; nothing is left waiting.
func TestRequestRunEnds(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	ctx := testCtx(t)
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	responder(t, b.URL(), "svc/hold", func(eventloop.Message) { held <- struct{}{}; <-release })
	t.Cleanup(func() { close(release) }) // before the responder's run ends (cleanups run last first)
	c := start(t, client.Options{Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "requester"}})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, "svc/hold", nil)
		errc <- err
	}()
	<-held
	runErr := c.stop(t)
	err := <-errc
	if !errors.Is(err, client.ErrRunEnded) || !errors.Is(err, eventloop.ErrStopped) || !errors.Is(runErr, eventloop.ErrStopped) {
		t.Fatalf("Request = %v (run: %v), want ErrRunEnded wrapping ErrStopped", err, runErr)
	}
	if c.Waiting() != 0 {
		t.Fatalf("%d waiters left", c.Waiting())
	}
}

// TestRequestFromHandler: a handler on the Run goroutine publishes and
// makes requests (one answered, one timing out); the calls drive the loop
// themselves instead of deadlocking, and a message arriving meanwhile
// waits for the handler to return.
func TestRequestFromHandler(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := mqtttest.StartT(t, mqtttest.Options{})
	ctx := testCtx(t)
	responder(t, b.URL(), "svc/echo", nil)
	order := make(chan string, 4)
	var c *running
	c = start(t, client.Options{Loop: eventloop.Options{Servers: []string{b.URL()}, ClientID: "inline"}})
	if _, err := c.Subscribe(ctx, eventloop.Filter{Topic: "in/#", QoS: 1}, func(hctx context.Context, m eventloop.Message) error {
		order <- "start " + string(m.Payload)
		if string(m.Payload) != "1" {
			return nil
		}
		// Message 2 arrives while this handler waits.
		if _, err := c.Publish(hctx, "in/x", []byte("2"), client.PublishOptions{QoS: 1}); err != nil {
			return err
		}
		r, err := c.Request(hctx, "svc/echo", []byte("q"))
		if err != nil {
			return err
		}
		order <- "reply " + string(r.Payload)
		// A deadline ends the wait on the Run goroutine too.
		dctx, cancel := context.WithTimeout(hctx, 50*time.Millisecond)
		defer cancel()
		if _, err := c.Request(dctx, "svc/nobody", nil); !errors.Is(err, context.DeadlineExceeded) {
			order <- fmt.Sprintf("request to nobody: %v", err)
			return nil
		}
		order <- "timeout"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "in/x", []byte("1"), client.PublishOptions{QoS: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{"start 1", "reply re:q", "timeout", "start 2"}
	for _, w := range want {
		if got := <-order; got != w {
			t.Fatalf("got %q, want %q (in order %q)", got, w, want)
		}
	}
}
