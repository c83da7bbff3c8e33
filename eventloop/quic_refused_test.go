//go:build linux

package eventloop_test

import (
	"net"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// refusedUDP returns a quic:// URL of a loopback UDP port where nothing
// is bound: the kernel answers with ICMP port unreachable.
func refusedUDP(t *testing.T) string {
	t.Helper()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := udp.LocalAddr().String()
	if err := udp.Close(); err != nil {
		t.Fatal(err)
	}
	return "quic://" + addr
}

// TestQUICRefusedFallback: with quic:// first and mqtts:// second, a
// client whose QUIC port is closed moves on to mqtts:// under
// reconnect.Never without waiting for the handshake timeout (set far
// beyond the test's own timeout, so that waiting for it fails the test).
func TestQUICRefusedFallback(t *testing.T) {
	certs := testcerts.Get()
	b := mqtttest.StartT(t, mqtttest.Options{TLS: certs.ServerConfig(certs.Server, false)})
	refused := refusedUDP(t)
	c := newClient(t, "", quicOptions(eventloop.Options{
		Servers:              []string{refused, b.TLSURL()},
		Reconnect:            reconnect.Never,
		QUICHandshakeTimeout: time.Hour,
		ConnectTimeout:       time.Hour,
	}))
	conn, ok := c.next().(eventloop.Connected)
	if !ok {
		t.Fatal("the first notification is not Connected")
	}
	if conn.Transport != "tls" || conn.Server != b.TLSURL() {
		t.Fatalf("connected over %s to %s, want tls to %s", conn.Transport, conn.Server, b.TLSURL())
	}
}
