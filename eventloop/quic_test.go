package eventloop_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testbroker"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/reconnect"
)

// quicGoroutines are quic-go's own goroutines (4 or so per connection,
// plus its transport's): the dependency's, allowed beside the loop.
const quicGoroutines = "github.com/quic-go/quic-go"

func quicBroker(t *testing.T) *testbroker.Broker {
	t.Helper()
	return testbroker.StartT(t, testbroker.Options{QUIC: true})
}

func quicOptions(o eventloop.Options) eventloop.Options {
	o.TLSConfig = testcerts.Get().ClientConfig()
	return o
}

// TestQUICQoSRoundTrip publishes at QoS 0, 1 and 2 over quic:// to a
// topic the same client subscribed to, with small payloads and a 1 MiB
// one.
func TestQUICQoSRoundTrip(t *testing.T) {
	b := quicBroker(t)
	c := newClient(t, b.QUICURL(), quicOptions(eventloop.Options{}))
	conn := c.expectConnected()
	if conn.Transport != "quic" || conn.Server != b.QUICURL() {
		t.Fatalf("Connected over %q to %q", conn.Transport, conn.Server)
	}
	if conn.Used0RTT {
		t.Fatal("first connection reports 0-RTT")
	}
	topic := uniqueID("quic")
	c.subscribe(eventloop.Filter{Topic: topic + "/#", QoS: 2})
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	const perQoS = 20
	for q := byte(0); q <= 2; q++ {
		for i := 0; i < perQoS; i++ {
			c.send(eventloop.Publish{Topic: fmt.Sprintf("%s/%d", topic, q), QoS: q, Payload: []byte(fmt.Sprintf("%d-%d", q, i))})
		}
		c.send(eventloop.Publish{Topic: fmt.Sprintf("%s/big%d", topic, q), QoS: q, Payload: big})
	}
	got := map[string]int{}
	bigs, acked := 0, map[byte]int{}
	for len(got) < 3*perQoS || bigs < 3 || acked[1] < perQoS+1 || acked[2] < perQoS+1 {
		switch n := c.next().(type) {
		case eventloop.Message:
			if len(n.Payload) == len(big) {
				if !bytes.Equal(n.Payload, big) {
					t.Fatal("1 MiB payload corrupted")
				}
				bigs++
				continue
			}
			if want := n.Topic[len(n.Topic)-1] - '0'; n.QoS != want {
				t.Fatalf("message on %s arrived at QoS %d", n.Topic, n.QoS)
			}
			got[string(n.Payload)]++
		case eventloop.Published:
			if n.Err != nil {
				t.Fatalf("publish refused: %v", n.Err)
			}
			acked[n.Request.QoS]++
		case eventloop.Disconnected:
			t.Fatalf("disconnected: %v", n.Err)
		case eventloop.RequestFailed:
			t.Fatalf("request failed: %v", n.Err)
		}
	}
	for k, v := range got {
		if v != 1 {
			t.Errorf("message %s arrived %d times", k, v)
		}
	}
	c.send(eventloop.Disconnect{})
	mustIs(t, c.end(), eventloop.ErrDisconnected)
}

// TestQUIC0RTTReconnect: after the broker drops the connection, the loop
// reconnects with CONNECT in 0-RTT data, using the session ticket of the
// first connection kept in the loop's TLS session cache.
func TestQUIC0RTTReconnect(t *testing.T) {
	b := quicBroker(t)
	id := uniqueID("zerortt")
	c := newClient(t, b.QUICURL(), quicOptions(eventloop.Options{
		ClientID:  id,
		QUIC0RTT:  true,
		Reconnect: reconnect.Automatic,
	}))
	first := c.expectConnected()
	if first.Used0RTT {
		t.Fatal("first connection reports 0-RTT")
	}
	if err := b.DisconnectClient(id, 0x98); err != nil { // administrative action
		t.Fatal(err)
	}
	d := expect[eventloop.Disconnected](c)
	var rc *eventloop.ReasonCodeError
	if !errors.As(d.Err, &rc) || rc.Code != 0x98 {
		t.Fatalf("Disconnected with %v, want the broker's DISCONNECT 0x98", d.Err)
	}
	second := c.expectConnected()
	if !second.Used0RTT {
		t.Fatal("reconnection did not use 0-RTT")
	}
	if second.Transport != "quic" {
		t.Fatalf("reconnected over %q", second.Transport)
	}
	// The connection works.
	topic := uniqueID("zerortt")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	c.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("after 0-RTT")})
	if m := expect[eventloop.Message](c); string(m.Payload) != "after 0-RTT" {
		t.Fatalf("got %q", m.Payload)
	}
}

// blackholeUDP returns a quic:// URL whose UDP port is bound but never
// answers: UDP blocked on the way to the server.
func blackholeUDP(t *testing.T) string {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	return "quic://" + udp.LocalAddr().String()
}

// TestQUICFallback: with quic:// first and mqtts:// second, a client
// whose UDP is blocked connects over TLS at once, under every reconnect
// policy, and Connected says so.
func TestQUICFallback(t *testing.T) {
	certs := testcerts.Get()
	b := testbroker.StartT(t, testbroker.Options{TLS: certs.ServerConfig(certs.Server, false)})
	for _, policy := range []reconnect.Policy{reconnect.Automatic, reconnect.Never} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			blocked := blackholeUDP(t)
			c := newClient(t, "", quicOptions(eventloop.Options{
				Servers:              []string{blocked, b.TLSURL()},
				QUICHandshakeTimeout: 200 * time.Millisecond,
				Reconnect:            policy,
			}))
			conn, ok := c.next().(eventloop.Connected)
			if !ok {
				t.Fatal("the first notification is not Connected")
			}
			if conn.Transport != "tls" || conn.Server != b.TLSURL() {
				t.Fatalf("connected over %s to %s, want tls to %s", conn.Transport, conn.Server, b.TLSURL())
			}
		})
	}
}

// TestQUICBlockedFails: when QUIC is the only server and UDP is blocked,
// the run ends with ErrQUICHandshakeTimeout.
func TestQUICBlockedFails(t *testing.T) {
	c := newClient(t, "", quicOptions(eventloop.Options{
		Servers:              []string{blackholeUDP(t)},
		QUICHandshakeTimeout: 200 * time.Millisecond,
	}))
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, eventloop.ErrQUICHandshakeTimeout)
}

// TestQUICRunStartsNoGoroutine: over QUIC, the only goroutines beside the
// test's and the broker's are quic-go's, and when the run is over none is
// left.
func TestQUICRunStartsNoGoroutine(t *testing.T) {
	b := quicBroker(t)
	ignore := append(leakcheck.Standard(), brokerGoroutines...)
	before := leakcheck.Snapshot()
	sawQUIC := false
	check := func(stage string) {
		t.Helper()
		started := leakcheck.Started(before, leakcheck.Snapshot(), ignore...)
		if gs := leakcheck.Without(started, quicGoroutines); len(gs) > 0 {
			t.Fatalf("%s: the loop started goroutines:\n%s", stage, leakcheck.Report(gs))
		}
		if len(started) > 0 {
			sawQUIC = true
		}
	}

	reqs := make(chan eventloop.Request, 16)
	loop, err := eventloop.New(quicOptions(eventloop.Options{Servers: []string{b.QUICURL()}, ClientID: uniqueID("nogo-quic"), KeepAlive: time.Second}))
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
	if c, ok := next().(eventloop.Connected); !ok || c.Transport != "quic" {
		t.Fatalf("first notification %#v", c)
	}
	topic := uniqueID("nogo-quic")
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
	if !sawQUIC {
		t.Fatal("no quic-go goroutine seen: the check proves nothing")
	}
	reqs <- eventloop.Disconnect{}
	for {
		if _, err := events.Next(); err != nil {
			mustIs(t, err, eventloop.ErrDisconnected)
			break
		}
	}
	// quic-go's goroutines of the connection are gone too.
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
		t.Fatalf("left running after the run:\n%s", leakcheck.Report(left))
	}
}

// TestQUICNothingLeftAfterClose ends QUIC runs by Close from another
// goroutine and by cancelling the context, and checks nothing is left.
func TestQUICNothingLeftAfterClose(t *testing.T) {
	b := quicBroker(t)
	ignore := append(leakcheck.Standard(), brokerGoroutines...)
	before := leakcheck.Snapshot()
	for i := 0; i < 2; i++ {
		loop, err := eventloop.New(quicOptions(eventloop.Options{Servers: []string{b.QUICURL()}, ClientID: uniqueID("left-quic")}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		events := loop.Run(ctx, make(chan eventloop.Request))
		if _, err := events.Next(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := events.Next(); err != nil {
					done <- err
					return
				}
			}
		}()
		if i == 0 {
			loop.Close()
		} else {
			cancel()
		}
		mustIs(t, <-done, eventloop.ErrStopped)
		cancel()
	}
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, ignore...); len(left) > 0 {
		t.Fatalf("left running:\n%s", leakcheck.Report(left))
	}
}

// TestQUICMutualTLS: a broker that requires client certificates accepts a
// client that has one over QUIC, and refuses one without with
// ErrClientCertificateRequired, as over mqtts://.
func TestQUICMutualTLS(t *testing.T) {
	certs := testcerts.Get()
	b := testbroker.StartT(t, testbroker.Options{QUIC: true, TLS: certs.ServerConfig(certs.Server, true)})
	c := startClient(t, b.QUICURL(), eventloop.Options{TLSConfig: certs.MutualClientConfig()})
	c.send(eventloop.Disconnect{})
	mustIs(t, c.end(), eventloop.ErrDisconnected)

	c = newClient(t, b.QUICURL(), eventloop.Options{TLSConfig: certs.ClientConfig()})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, eventloop.ErrTLSHandshake)
	mustIs(t, err, eventloop.ErrClientCertificateRequired)
}
