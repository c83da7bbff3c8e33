package mqtttest

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// TestTLSListener: with Options.TLS the broker serves MQTT over TLS on a
// second port, next to plain TCP; a client is served on each; a
// connection that never finishes its TLS handshake does not keep Close
// waiting, and Close leaves no goroutine behind.
func TestTLSListener(t *testing.T) {
	before := leakcheck.Snapshot()
	certs := testcerts.Get()
	b, err := Start(Options{TLS: certs.ServerConfig(certs.Server, false)})
	if err != nil {
		t.Fatal(err)
	}
	if b.TLSURL() != "mqtts://"+b.TLSAddr() || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSURL %q, TLSAddr %q, Addr %q", b.TLSURL(), b.TLSAddr(), b.Addr())
	}

	conn, err := tls.Dial("tcp", b.TLSAddr(), certs.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(guard))
	if ack := connect5(t, conn, "tls-client"); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02X", ack.ReasonCode)
	}
	plain := dial(t, b)
	connect5(t, plain, "tcp-client")
	if _, err := b.WaitPacket(testContext(t), "tls-client", ToClient, packets.CONNACK); err != nil {
		t.Fatal(err)
	}

	stalled, err := net.Dial("tcp", b.TLSAddr()) // TCP only, no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The TLS client got DISCONNECT 0x8B (server shutting down).
	cp := read(t, conn)
	if d, ok := cp.Content.(*packets.Disconnect); !ok || d.ReasonCode != 0x8B {
		t.Fatalf("after Close the TLS client read %v", cp)
	}
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("left running:\n%s", leakcheck.Report(left))
	}
}

func TestNoTLSListener(t *testing.T) {
	b := StartT(t, Options{})
	if b.TLSURL() != "" || b.TLSAddr() != "" {
		t.Fatalf("TLSURL %q without Options.TLS", b.TLSURL())
	}
}
