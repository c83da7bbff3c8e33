package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/testbroker"
	"github.com/mqttloop/mqttloop/reconnect"
)

// testTimeout guards tests against hangs; it is never a synchronization
// device: every wait below ends on an event, and the timeout only turns a
// hang into a failure.
const testTimeout = 60 * time.Second

// brokerCase is a real broker an end-to-end test runs against.
type brokerCase struct {
	name  string
	url   string
	mochi *testbroker.Broker // nil for mosquitto
}

// brokers starts the embedded broker and mosquitto (a missing mosquitto
// fails the test when CI is set, and skips only that case otherwise).
func brokers(t *testing.T) []brokerCase {
	t.Helper()
	mb := testbroker.StartT(t, testbroker.Options{})
	cases := []brokerCase{{name: "mochi", url: mb.URL(), mochi: mb}}
	if m := startMosquitto(t); m != "" {
		cases = append(cases, brokerCase{name: "mosquitto", url: m})
	}
	return cases
}

func startMosquitto(t *testing.T) string {
	t.Helper()
	if !mosquittoInstalled() {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto is not installed (CI is set, so this is a failure): apt-get install -y mosquitto")
		}
		t.Log("mosquitto not installed: its cases are skipped (apt-get install -y mosquitto)")
		return ""
	}
	// max_queued_messages 0: mosquitto's default (1000) silently drops
	// QoS 1/2 messages queued for a slow subscriber beyond that.
	return mosquitto.Start(t, mosquitto.Options{Extra: []string{"max_queued_messages 0"}}).URL()
}

func mosquittoInstalled() bool {
	if _, err := exec.LookPath("mosquitto"); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/mosquitto")
	return err == nil
}

// forEachBroker runs f as a subtest against every broker.
func forEachBroker(t *testing.T, f func(t *testing.T, b brokerCase)) {
	for _, b := range brokers(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// client is one event loop driven by a test goroutine, with its
// notifications forwarded to a channel.
type client struct {
	t      *testing.T
	loop   *eventloop.EventLoop
	reqs   chan eventloop.Request
	out    chan eventloop.Notification
	done   chan struct{}
	err    error
	cancel context.CancelFunc
	// reconnects: the client's policy retries, so Disconnected and
	// Reconnecting are expected along the way.
	reconnects bool
}

var clientSeq struct {
	sync.Mutex
	n int
}

func uniqueID(prefix string) string {
	clientSeq.Lock()
	defer clientSeq.Unlock()
	clientSeq.n++
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, clientSeq.n)
}

// startClient starts a loop in a goroutine of the test and waits for
// Connected.
func startClient(t *testing.T, url string, opts eventloop.Options) *client {
	t.Helper()
	c := newClient(t, url, opts)
	c.expectConnected()
	return c
}

func newClient(t *testing.T, url string, opts eventloop.Options) *client {
	t.Helper()
	if opts.Servers == nil {
		opts.Servers = []string{url}
	}
	if opts.ClientID == "" {
		opts.ClientID = uniqueID(t.Name())
	}
	if opts.Logger == nil && os.Getenv("MQTTLOOP_TEST_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	c := &client{t: t, loop: loop, reconnects: opts.Reconnect != reconnect.Never, reqs: make(chan eventloop.Request, 64), out: make(chan eventloop.Notification, 1024), done: make(chan struct{}), cancel: cancel}
	events := loop.Run(ctx, c.reqs)
	go func() {
		defer close(c.done)
		defer close(c.out)
		for {
			n, err := events.Next()
			if err != nil {
				c.err = err
				return
			}
			c.out <- n
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	return c
}

// next returns the next notification; it fails the test if the run ends.
func (c *client) next() eventloop.Notification {
	c.t.Helper()
	select {
	case n, ok := <-c.out:
		if !ok {
			c.t.Fatalf("run ended: %v", c.err)
		}
		return n
	case <-time.After(testTimeout):
		c.t.Fatalf("no notification within %v", testTimeout)
	}
	return nil
}

// expect returns the next notification of type T, failing on
// RequestFailed and skipping others only if skip allows.
func expect[T eventloop.Notification](c *client) T {
	c.t.Helper()
	for {
		n := c.next()
		if v, ok := n.(T); ok {
			return v
		}
		if rf, ok := n.(eventloop.RequestFailed); ok {
			c.t.Fatalf("request failed: %#v: %v", rf.Request, rf.Err)
		}
		if d, ok := n.(eventloop.Disconnected); ok && !c.reconnects {
			c.t.Fatalf("disconnected while waiting for %T: %v", *new(T), d.Err)
		}
	}
}

func (c *client) expectConnected() eventloop.Connected {
	c.t.Helper()
	return expect[eventloop.Connected](c)
}

func (c *client) send(r eventloop.Request) {
	c.t.Helper()
	select {
	case c.reqs <- r:
	case <-c.done:
		c.t.Fatalf("run ended before request %#v: %v", r, c.err)
	}
}

func (c *client) subscribe(filters ...eventloop.Filter) eventloop.Subscribed {
	c.t.Helper()
	c.send(eventloop.Subscribe{Filters: filters})
	s := expect[eventloop.Subscribed](c)
	if err := s.Err(); err != nil {
		c.t.Fatalf("subscribe: %v", err)
	}
	return s
}

// end waits for the run to end and returns its error, failing on
// notifications other than the allowed ones.
func (c *client) end() error {
	c.t.Helper()
	for {
		select {
		case _, ok := <-c.out:
			if !ok {
				return c.err
			}
		case <-time.After(testTimeout):
			c.t.Fatalf("run did not end within %v", testTimeout)
		}
	}
}

func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v is not %v", err, target)
	}
}

func newTestLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
