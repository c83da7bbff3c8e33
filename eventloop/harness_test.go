package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// testTimeout guards tests against hangs; it is never a synchronization
// device: every wait below ends on an event, and the timeout only turns a
// hang into a failure.
const testTimeout = 60 * time.Second

// brokerCase is a real broker an end-to-end test runs against, the
// transport its clients use, and the MQTT version they speak.
type brokerCase struct {
	name      string // broker, transport and version: "mochi/tcp/v5", "mosquitto/wss/v4", ...
	url       string
	transport string           // "tcp", "tls", "ws", "wss", "quic" or "unix"
	mochi     *mqtttest.Broker // nil for mosquitto
	version   byte             // Options.ProtocolVersion of the case's clients (0: 5)
	tcpURL    string           // the same broker over plain TCP
}

// endpoint is one way into a broker.
type endpoint struct {
	transport, url string
}

// brokers starts the embedded broker and mosquitto (a missing mosquitto
// fails the test when CI is set, and skips only that case otherwise), each
// with a listener per transport it offers, and returns a case for each
// broker, transport and protocol version (MQTT 5 and 3.1.1).
func brokers(t *testing.T) []brokerCase {
	t.Helper()
	certs := testcerts.Get()
	mb := mqtttest.StartT(t, mqtttest.Options{WebSocket: true, QUIC: true, TLS: certs.ServerConfig(certs.Server, false)})
	type server struct {
		name      string
		mochi     *mqtttest.Broker
		endpoints []endpoint
	}
	servers := []server{{name: "mochi", mochi: mb, endpoints: []endpoint{
		{"tcp", mb.URL()},
		{"tls", mb.TLSURL()},
		{"ws", mb.WebSocketURL()},
		{"quic", mb.QUICURL()},
	}}}
	if eps := startMosquittoEverywhere(t); eps != nil {
		servers = append(servers, server{name: "mosquitto", endpoints: eps})
	}
	var cases []brokerCase
	for _, s := range servers {
		for _, ep := range s.endpoints {
			for _, v := range []byte{5, 4} {
				cases = append(cases, brokerCase{
					name:      fmt.Sprintf("%s/%s/v%d", s.name, ep.transport, v),
					url:       ep.url,
					transport: ep.transport,
					mochi:     s.mochi,
					version:   v,
					tcpURL:    s.endpoints[0].url,
				})
			}
		}
	}
	return cases
}

// startMosquittoEverywhere starts mosquitto with a listener per transport
// it offers and returns them (nil when mosquitto is missing outside CI).
func startMosquittoEverywhere(t *testing.T) []endpoint {
	t.Helper()
	if !mosquittoInstalled() {
		startMosquitto(t) // fails under CI
		return nil
	}
	files, err := testcerts.Get().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsFiles := &mosquitto.TLSFiles{CAFile: files.CA, CertFile: files.ServerCert, KeyFile: files.ServerKey}
	// max_queued_messages 0: mosquitto's default (1000) silently drops
	// QoS 1/2 messages queued for a slow subscriber beyond that.
	m := mosquitto.Start(t, mosquitto.Options{
		Extra: []string{"max_queued_messages 0"},
		Listeners: []mosquitto.Listener{
			{TLS: tlsFiles},
			{WebSocket: true},
			{WebSocket: true, TLS: tlsFiles},
			{Unix: true},
		},
	})
	return []endpoint{
		{"tcp", m.URL()},
		{"tls", "mqtts://" + m.ListenerAddr(0)},
		{"ws", "ws://" + m.ListenerAddr(1) + "/mqtt"},
		{"wss", "wss://" + m.ListenerAddr(2) + "/mqtt"},
		{"unix", "unix://" + m.ListenerAddr(3)},
	}
}

// options completes opts for the case: its server (unless set), its
// protocol version (unless set), and trust in the test CA for the
// transports that use TLS (unless TLSConfig is set).
func (b brokerCase) options(opts eventloop.Options) eventloop.Options {
	if opts.Servers == nil {
		opts.Servers = []string{b.url}
	}
	if opts.ProtocolVersion == 0 {
		opts.ProtocolVersion = b.version
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = testcerts.Get().ClientConfig()
	}
	if opts.QUICHandshakeTimeout == 0 && strings.HasPrefix(b.url, "quic") {
		// The default (5 s) is for networks; a test machine running the
		// suite in parallel has been seen to need more for 20 handshakes
		// at once (TestManyClients), and a timeout here is not what any
		// of these tests is about.
		opts.QUICHandshakeTimeout = time.Minute
	}
	return opts
}

// start starts a client of the case (see startClient) and waits for
// Connected, which must report the case's transport and version when the
// client uses the case's server.
func (b brokerCase) start(t *testing.T, opts eventloop.Options) *client {
	t.Helper()
	own := opts.Servers == nil
	c := b.newClient(t, opts)
	conn := c.expectConnected()
	want := b.version
	if want == 0 {
		want = 5
	}
	if own && (conn.Transport != b.transport || conn.ProtocolVersion != want) {
		t.Fatalf("connected over %s with MQTT version %d, want %s and %d", conn.Transport, conn.ProtocolVersion, b.transport, want)
	}
	return c
}

// newClient starts a client of the case without waiting for Connected.
func (b brokerCase) newClient(t *testing.T, opts eventloop.Options) *client {
	t.Helper()
	return newClient(t, b.url, b.options(opts))
}

// overTCP returns the case with its clients on the broker's plain TCP
// listener.
func (b brokerCase) overTCP() brokerCase {
	b.url, b.transport = b.tcpURL, "tcp"
	return b
}

// awaitOffline waits until the broker has ended the connection of
// clientID after the client disconnected. mochi handles a DISCONNECT on
// the connection's own goroutine, so a message published just after the
// client left can reach the closing connection and be lost (seen once in
// 54 runs of TestSessionPresent); mosquitto handles both in order on its
// single thread, so there is nothing to wait for.
func (b brokerCase) awaitOffline(t *testing.T, clientID string) {
	t.Helper()
	if b.mochi == nil {
		return
	}
	if !leakcheck.Poll(testTimeout, func() bool {
		cl, ok := b.mochi.Server().Clients.Get(clientID)
		return !ok || cl.Closed()
	}) {
		t.Fatalf("mochi still holds the connection of %s", clientID)
	}
}

// v4 reports whether the case speaks MQTT 3.1.1.
func (b brokerCase) v4() bool { return b.version == 4 }

// portable turns the MQTT 5 session options of opts into their MQTT 3.1.1
// equivalents on a version 4 case: a session kept by the broker is
// CleanStart false without SessionExpiry, and there is no ReceiveMaximum.
func (b brokerCase) portable(opts eventloop.Options) eventloop.Options {
	if b.v4() {
		opts.SessionExpiry, opts.ReceiveMaximum = 0, 0
	}
	return opts
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

// forEachBroker runs f as a subtest against every broker, over every
// transport, with MQTT 5 and with MQTT 3.1.1 ("mochi/tcp/v5",
// "mosquitto/wss/v4", ...).
func forEachBroker(t *testing.T, f func(t *testing.T, b brokerCase)) {
	forEachBrokerOver(t, nil, f)
}

// forEachBrokerOver is forEachBroker limited to the given transports (all
// when nil), for tests whose tools work on some transports only (a TCP
// fault proxy, say).
func forEachBrokerOver(t *testing.T, transports []string, f func(t *testing.T, b brokerCase)) {
	for _, b := range brokers(t) {
		if transports != nil && !slices.Contains(transports, b.transport) {
			continue
		}
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
	// wakes: the loop was promised a Wake after each send
	// (Options.WakeAfterSend).
	wakes bool
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
	return newClientFor(t, url, opts, testTimeout)
}

// newClientFor is newClient whose run lasts up to timeout.
func newClientFor(t *testing.T, url string, opts eventloop.Options, timeout time.Duration) *client {
	t.Helper()
	if opts.Servers == nil {
		opts.Servers = []string{url}
	}
	if opts.ClientID == "" {
		opts.ClientID = uniqueID(t.Name())
	}
	if opts.Reconnect == reconnect.AfterFirstSuccess && opts.BackOff == nil {
		// The loop's default policy survives a lost connection; a test
		// that chose neither a policy nor a back-off expects none, so it
		// runs with Never: an unexpected loss fails it (see expect)
		// instead of being survived unnoticed.
		opts.Reconnect = reconnect.Never
	}
	if os.Getenv("MQTTLOOP_TEST_WAKE") != "" {
		// The whole suite over the poller waits of WakeAfterSend (send
		// keeps the promise): go test ./eventloop with this set.
		opts.WakeAfterSend = true
	}
	if opts.Logger == nil && os.Getenv("MQTTLOOP_TEST_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c := &client{t: t, loop: loop, wakes: opts.WakeAfterSend, reconnects: opts.Reconnect != reconnect.Never, reqs: make(chan eventloop.Request, 64), out: make(chan eventloop.Notification, 1024), done: make(chan struct{}), cancel: cancel}
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
		if c.wakes {
			c.loop.Wake()
		}
	case <-c.done:
		c.t.Fatalf("run ended before request %#v: %v", r, c.err)
	}
}

// woke keeps the promise of Options.WakeAfterSend after a send made on
// c.reqs directly (send does it itself).
func (c *client) woke() {
	if c.wakes {
		c.loop.Wake()
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
