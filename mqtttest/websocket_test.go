package mqtttest

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// TestWebSocketListener connects over WebSocket, checks the recorded
// upgrade, and that Close ends every connection (also one that never sent
// its upgrade request) and waits for every goroutine.
func TestWebSocketListener(t *testing.T) {
	before := leakcheck.Snapshot()
	b, err := Start(Options{WebSocket: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.WebSocketURL(), "ws://127.0.0.1:") || !strings.HasSuffix(b.WebSocketURL(), "/mqtt") {
		t.Fatalf("WebSocketURL %q", b.WebSocketURL())
	}
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: guard}
	ws, resp, err := d.Dial(b.WebSocketURL()+"?q=1", http.Header{"X-Test": {"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Sec-Websocket-Protocol") != "mqtt" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-Websocket-Protocol"))
	}
	var buf bytes.Buffer
	if _, err := (&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "wsc", CleanStart: true}).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	// The CONNECT split over two messages: the listener presents a byte
	// stream.
	for _, part := range [][]byte{buf.Bytes()[:3], buf.Bytes()[3:]} {
		if err := ws.WriteMessage(websocket.BinaryMessage, part); err != nil {
			t.Fatal(err)
		}
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := packets.ReadPacket(bytes.NewReader(msg))
	if err != nil || cp.Type != packets.CONNACK {
		t.Fatalf("read %x: %v", msg, err)
	}
	ups := b.WebSocketUpgrades()
	if len(ups) != 1 || ups[0].Path != "/mqtt?q=1" || ups[0].Header.Get("X-Test") != "yes" || ups[0].Host == "" {
		t.Fatalf("upgrades %+v", ups)
	}

	silent, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(b.WebSocketURL(), "/mqtt"), "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leakcheck.Started(before, leakcheck.Snapshot(), leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("Close returned with broker goroutines running: %s", leakcheck.Report(left))
	}
	// The MQTT 5 client got DISCONNECT 0x8B, then the connection ended.
	_, msg, err = ws.ReadMessage()
	if err != nil {
		t.Fatalf("no DISCONNECT: %v", err)
	}
	if cp, err := packets.ReadPacket(bytes.NewReader(msg)); err != nil || cp.Type != packets.DISCONNECT {
		t.Fatalf("read %x: %v", msg, err)
	}
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("connection still open after Close")
	}
	expectClosed(t, silent)
}

// TestSecureWebSocketListener: with Options.SecureWebSocket the broker
// serves MQTT over WebSocket over TLS with the test certificates (no
// Options.TLS, so no TLS listener); the upgrade is recorded with the
// others; a connection that never sends its ClientHello does not keep
// Close waiting, and Close leaves no goroutine behind.
func TestSecureWebSocketListener(t *testing.T) {
	before := leakcheck.Snapshot()
	b, err := Start(Options{SecureWebSocket: true})
	if err != nil {
		t.Fatal(err)
	}
	u := b.SecureWebSocketURL()
	if !strings.HasPrefix(u, "wss://127.0.0.1:") || !strings.HasSuffix(u, "/mqtt") || b.WebSocketURL() != "" || b.TLSURL() != "" {
		t.Fatalf("SecureWebSocketURL %q, WebSocketURL %q, TLSURL %q", u, b.WebSocketURL(), b.TLSURL())
	}
	// Plain WebSocket on the TLS port is refused.
	plain := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: guard}
	if ws, _, err := plain.Dial("ws"+strings.TrimPrefix(u, "wss"), nil); err == nil {
		_ = ws.Close()
		t.Fatal("ws:// dial to the wss listener succeeded")
	}
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: guard, TLSClientConfig: testcerts.Get().ClientConfig()}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var buf bytes.Buffer
	if _, err := (&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "wssc", CleanStart: true}).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := packets.ReadPacket(bytes.NewReader(msg)); err != nil || cp.Type != packets.CONNACK || cp.Content.(*packets.Connack).ReasonCode != 0 {
		t.Fatalf("read %x: %v", msg, err)
	}
	if ups := b.WebSocketUpgrades(); len(ups) != 1 || ups[0].Path != "/mqtt" {
		t.Fatalf("upgrades %+v", ups)
	}

	stalled, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(u, "wss://"), "/mqtt")) // no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("left running:\n%s", leakcheck.Report(left))
	}
	// The MQTT 5 client got DISCONNECT 0x8B, then the connection ended.
	_, msg, err = ws.ReadMessage()
	if err != nil {
		t.Fatalf("no DISCONNECT: %v", err)
	}
	if cp, err := packets.ReadPacket(bytes.NewReader(msg)); err != nil || cp.Type != packets.DISCONNECT || cp.Content.(*packets.Disconnect).ReasonCode != 0x8B {
		t.Fatalf("read %x: %v", msg, err)
	}
	expectClosed(t, stalled)
}
