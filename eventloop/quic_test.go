package eventloop_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

func quicBroker(t *testing.T) *mqtttest.Broker {
	t.Helper()
	return mqtttest.StartT(t, mqtttest.Options{QUIC: true})
}

func quicOptions(o eventloop.Options) eventloop.Options {
	o.TLSConfig = testcerts.Get().ClientConfig()
	return o
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
	b := mqtttest.StartT(t, mqtttest.Options{TLS: certs.ServerConfig(certs.Server, false)})
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

// TestQUICMutualTLS: a broker that requires client certificates accepts a
// client that has one over QUIC, and refuses one without with
// ErrClientCertificateRequired, as over mqtts://.
func TestQUICMutualTLS(t *testing.T) {
	certs := testcerts.Get()
	b := mqtttest.StartT(t, mqtttest.Options{QUIC: true, TLS: certs.ServerConfig(certs.Server, true)})
	c := startClient(t, b.QUICURL(), eventloop.Options{TLSConfig: certs.MutualClientConfig()})
	c.send(eventloop.Disconnect{})
	mustIs(t, c.end(), eventloop.ErrDisconnected)

	c = newClient(t, b.QUICURL(), eventloop.Options{TLSConfig: certs.ClientConfig()})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, eventloop.ErrTLSHandshake)
	mustIs(t, err, eventloop.ErrClientCertificateRequired)
}
