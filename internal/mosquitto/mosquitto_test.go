package mosquitto

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// guard is a failure guard for reads; no test relies on it passing.
const guard = 30 * time.Second

// connect opens a TCP connection, sends an MQTT 5 CONNECT and returns the
// connection and the CONNACK.
func connect(t *testing.T, addr, id string) (net.Conn, *packets.Connack) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(guard))
	c := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: id, CleanStart: true, KeepAlive: 60, Properties: &packets.Properties{}}
	if _, err := c.WriteTo(conn); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	cp, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	ack, ok := cp.Content.(*packets.Connack)
	if !ok || ack.ReasonCode != 0 {
		t.Fatalf("want successful CONNACK, got %s", cp)
	}
	return conn, ack
}

func TestStartConnectStopRestart(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := Start(t, Options{MaxPacketSize: 4096, MaxKeepalive: 30, Verbose: true})
	if !strings.HasPrefix(b.URL(), "mqtt://127.0.0.1:") || b.Port() == 0 || !b.Running() {
		t.Fatalf("URL %q, port %d, running %v", b.URL(), b.Port(), b.Running())
	}

	conn, ack := connect(t, b.Addr(), "first")
	if p := ack.Properties.MaximumPacketSize; p == nil || *p != 4096 {
		t.Errorf("Maximum Packet Size %v, want 4096", p)
	}
	if p := ack.Properties.ServerKeepAlive; p == nil || *p != 30 {
		t.Errorf("Server Keep Alive %v, want 30", p)
	}

	url := b.URL()
	b.Stop()
	if b.Running() {
		t.Fatal("still running after Stop")
	}
	// The client's connection was closed by the broker.
	var buf [16]byte
	if n, err := conn.Read(buf[:]); n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("after Stop read %d bytes, %v", n, err)
	}
	if c, err := net.Dial("tcp", b.Addr()); err == nil {
		_ = c.Close()
		t.Fatal("port still accepts after Stop")
	}
	b.Stop() // stopping twice is fine

	b.Restart()
	if b.URL() != url {
		t.Fatalf("URL changed across Restart: %q -> %q", url, b.URL())
	}
	connect(t, b.Addr(), "second")
	b.Restart() // restarting a running broker works too
	connect(t, b.Addr(), "third")

	if log := b.Log(); !strings.Contains(log, "mosquitto version") || !strings.Contains(log, "third") {
		t.Errorf("log lacks the expected lines:\n%s", log)
	}
}

func TestConfig(t *testing.T) {
	got := config(1234, nil, nil, Options{MaxInflightMessages: 5, MaxQueuedMessages: 7, NoDelay: true, Extra: []string{"retain_available false"}})
	for _, want := range []string{
		"listener 1234 127.0.0.1\n", "allow_anonymous true\n", "persistence false\n", "log_dest stderr\n",
		"max_inflight_messages 5\n", "max_queued_messages 7\n", "set_tcp_nodelay true\n", "retain_available false\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "max_packet_size") || strings.Contains(got, "log_type") {
		t.Errorf("config sets options left zero:\n%s", got)
	}
}

func TestExtraListeners(t *testing.T) {
	certs := testcerts.Get()
	files, err := certs.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsFiles := &TLSFiles{CAFile: files.CA, CertFile: files.ServerCert, KeyFile: files.ServerKey}
	b := Start(t, Options{Listeners: []Listener{{TLS: tlsFiles}, {WebSocket: true}}})

	conn, err := tls.Dial("tcp", b.ListenerAddr(0), certs.ClientConfig())
	if err != nil {
		t.Fatalf("TLS listener: %v\n%s", err, b.Log())
	}
	_ = conn.Close()
	ws, err := net.Dial("tcp", b.ListenerAddr(1))
	if err != nil {
		t.Fatalf("websockets listener: %v", err)
	}
	_ = ws.Close()
}
