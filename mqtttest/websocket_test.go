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
