package mqtttest

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

// guard is the failure guard for blocking reads in these tests; no test
// relies on it passing.
const guard = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, b *Broker) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(guard))
	return conn
}

func write(t *testing.T, conn net.Conn, p interface {
	WriteTo(io.Writer) (int64, error)
}) {
	t.Helper()
	if _, err := p.WriteTo(conn); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func read(t *testing.T, conn net.Conn) *packets.ControlPacket {
	t.Helper()
	cp, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return cp
}

// expectClosed reads from conn and fails unless the broker closed it.
func expectClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	var buf [64]byte
	n, err := conn.Read(buf[:])
	if n > 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("want connection closed by broker, got %d bytes % x, err %v", n, buf[:n], err)
	}
}

// connect5 sends an MQTT 5 CONNECT and returns the CONNACK.
func connect5(t *testing.T, conn net.Conn, id string) *packets.Connack {
	t.Helper()
	write(t, conn, &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        id,
		CleanStart:      true,
		KeepAlive:       60,
		Properties:      &packets.Properties{},
	})
	cp := read(t, conn)
	ack, ok := cp.Content.(*packets.Connack)
	if !ok {
		t.Fatalf("want CONNACK, got %s", cp.PacketType())
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK reason 0x%02X", ack.ReasonCode)
	}
	return ack
}

// connect311 is an MQTT 3.1.1 CONNECT, clean session, keepalive 60, written
// by hand because paho's encoder always writes MQTT 5 properties.
func connect311(id string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func TestStartCloseWaitsForEveryGoroutine(t *testing.T) {
	before := leakcheck.Snapshot()
	b, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.URL(), "mqtt://127.0.0.1:") || b.URL() != "mqtt://"+b.Addr() {
		t.Fatalf("URL %q, Addr %q", b.URL(), b.Addr())
	}
	if _, port, _ := net.SplitHostPort(b.Addr()); port == "0" || port == "" {
		t.Fatalf("no real port in %q", b.Addr())
	}
	ctx := testContext(t)

	// A client that completed CONNECT, one that only opened the socket and
	// one that sent half a CONNECT: mochi's own Close would wait forever
	// for the last two.
	c1 := dial(t, b)
	ack := connect5(t, c1, "c1")
	if ack.Properties.ReceiveMaximum == nil || *ack.Properties.ReceiveMaximum != 1024 {
		t.Errorf("CONNACK Receive Maximum %v, want mochi's default 1024", ack.Properties.ReceiveMaximum)
	}
	if _, err := b.WaitPacket(ctx, "c1", ToClient, packets.CONNACK); err != nil {
		t.Fatal(err)
	}
	silent := dial(t, b)
	half := dial(t, b)
	if _, err := half.Write(connect311("half")[:5]); err != nil {
		t.Fatal(err)
	}
	// Make sure the broker has a goroutine for each connection: the third
	// connection is accepted once it can complete a CONNECT.
	c3 := dial(t, b)
	connect5(t, c3, "c3")
	old := dial(t, b)
	if _, err := old.Write(connect311("old")); err != nil {
		t.Fatal(err)
	}
	var ack311 [4]byte
	if _, err := io.ReadFull(old, ack311[:]); err != nil {
		t.Fatal(err)
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := leakcheck.Started(before, leakcheck.Snapshot(), leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("Close returned with broker goroutines running: %s", leakcheck.Report(left))
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// The MQTT 5 clients got DISCONNECT 0x8B (server shutting down).
	for _, c := range []net.Conn{c1, c3} {
		cp := read(t, c)
		d, ok := cp.Content.(*packets.Disconnect)
		if !ok || d.ReasonCode != packets.DisconnectServerShuttingDown {
			t.Fatalf("want DISCONNECT 0x8B, got %s", cp)
		}
		expectClosed(t, c)
	}
	expectClosed(t, old) // MQTT 3.1.1: no DISCONNECT from brokers
	expectClosed(t, silent)
	expectClosed(t, half)
	if _, err := net.Dial("tcp", b.Addr()); err == nil {
		t.Fatal("broker still accepts connections after Close")
	}
}

func TestCaptureConnectAndPing(t *testing.T) {
	b := StartT(t, Options{})
	ctx := testContext(t)
	conn := dial(t, b)
	connect5(t, conn, "x")

	connect, err := b.WaitPacket(ctx, "x", FromClient, packets.CONNECT)
	if err != nil {
		t.Fatal(err)
	}
	if connect.Packet.Connect.ClientIdentifier != "x" || connect.Packet.ProtocolVersion != 5 {
		t.Fatalf("bad CONNECT record %v: %+v", connect, connect.Packet.Connect)
	}
	connack, err := b.WaitPacketAfter(ctx, connect.Seq, "x", ToClient, packets.CONNACK)
	if err != nil {
		t.Fatal(err)
	}
	if connack.Packet.ReasonCode != 0 || connack.Packet.Properties.ReceiveMaximum != 1024 {
		t.Fatalf("bad CONNACK record %+v", connack.Packet)
	}

	write(t, conn, &packets.Pingreq{})
	req, err := b.WaitPacket(ctx, "x", FromClient, packets.PINGREQ)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.WaitPacketAfter(ctx, req.Seq, "x", ToClient, packets.PINGRESP)
	if err != nil {
		t.Fatal(err)
	}
	if cp := read(t, conn); cp.Type != packets.PINGRESP {
		t.Fatalf("client got %s", cp.PacketType())
	}

	// A second ping is found only when waiting after the first answer.
	mark := b.LastSeq()
	write(t, conn, &packets.Pingreq{})
	req2, err := b.WaitPacketAfter(ctx, mark, "x", FromClient, packets.PINGREQ)
	if err != nil {
		t.Fatal(err)
	}
	if req2.Seq <= resp.Seq {
		t.Fatalf("second PINGREQ seq %d not after %d", req2.Seq, resp.Seq)
	}
	read(t, conn)
	if n := b.Count("x", FromClient, packets.PINGREQ); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}

	// Waiting ends with ctx.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.WaitPacket(done, "nobody", FromClient, packets.PINGREQ); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitPacket on cancelled ctx: %v", err)
	}
	all := b.Packets()
	for i, c := range all {
		if c.Seq != uint64(i+1) {
			t.Fatalf("record %d has Seq %d", i, c.Seq)
		}
	}
}

func TestDisconnectClient(t *testing.T) {
	b := StartT(t, Options{})
	ctx := testContext(t)

	if err := b.DisconnectClient("nobody", 0x98); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("DisconnectClient(nobody) = %v", err)
	}

	conn := dial(t, b)
	connect5(t, conn, "victim")
	if err := b.DisconnectClient("victim", packets.DisconnectAdministrativeAction); err != nil {
		t.Fatal(err)
	}
	cp := read(t, conn)
	d, ok := cp.Content.(*packets.Disconnect)
	if !ok || d.ReasonCode != packets.DisconnectAdministrativeAction {
		t.Fatalf("want DISCONNECT 0x98, got %s", cp)
	}
	if d.Properties.ReasonString == "" {
		t.Errorf("no Reason String in DISCONNECT")
	}
	expectClosed(t, conn)
	if _, err := b.WaitPacket(ctx, "victim", ToClient, packets.DISCONNECT); err != nil {
		t.Fatal(err)
	}
	if err := b.DisconnectClient("victim", 0x98); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("second DisconnectClient = %v", err)
	}

	// A reason code below 0x80 works the same way, without Reason String.
	conn2 := dial(t, b)
	connect5(t, conn2, "normal")
	if err := b.DisconnectClient("normal", packets.DisconnectNormalDisconnection); err != nil {
		t.Fatal(err)
	}
	cp = read(t, conn2)
	if d, ok := cp.Content.(*packets.Disconnect); !ok || d.ReasonCode != 0 || d.Properties.ReasonString != "" {
		t.Fatalf("want plain DISCONNECT 0x00, got %s", cp)
	}
	expectClosed(t, conn2)

	// An MQTT 3.1.1 client is just closed.
	conn3 := dial(t, b)
	if _, err := conn3.Write(connect311("old")); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn3, ack[:]); err != nil || ack != [4]byte{0x20, 0x02, 0x00, 0x00} {
		t.Fatalf("3.1.1 CONNACK % x, %v", ack, err)
	}
	if err := b.DisconnectClient("old", 0x98); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, conn3)
}

func TestConnackPropertiesAndLimits(t *testing.T) {
	b := StartT(t, Options{
		MaximumPacketSize: 200,
		ReceiveMaximum:    7,
		TopicAliasMaximum: 10,
		ServerKeepAlive:   30,
	})
	ctx := testContext(t)
	conn := dial(t, b)
	ack := connect5(t, conn, "limits")
	p := ack.Properties
	if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 200 {
		t.Errorf("Maximum Packet Size %v, want 200", p.MaximumPacketSize)
	}
	if p.ReceiveMaximum == nil || *p.ReceiveMaximum != 7 {
		t.Errorf("Receive Maximum %v, want 7", p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 10 {
		t.Errorf("Topic Alias Maximum %v, want 10", p.TopicAliasMaximum)
	}
	if p.ServerKeepAlive == nil || *p.ServerKeepAlive != 30 {
		t.Errorf("Server Keep Alive %v, want 30", p.ServerKeepAlive)
	}

	// A packet within the limit is read; one over it ends the connection
	// without DISCONNECT (mochi's behaviour) and is not recorded.
	write(t, conn, &packets.Publish{Topic: "t", Payload: make([]byte, 100), Properties: &packets.Properties{}})
	if _, err := b.WaitPacket(ctx, "limits", FromClient, packets.PUBLISH); err != nil {
		t.Fatal(err)
	}
	write(t, conn, &packets.Publish{Topic: "t", Payload: make([]byte, 300), Properties: &packets.Properties{}})
	expectClosed(t, conn)
	if n := b.Count("limits", FromClient, packets.PUBLISH); n != 1 {
		t.Fatalf("%d PUBLISH recorded, want 1", n)
	}
}

func TestRefuseMQTT5(t *testing.T) {
	b := StartT(t, Options{RefuseMQTT5: true})
	conn := dial(t, b)
	write(t, conn, &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "new", CleanStart: true, Properties: &packets.Properties{}})
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil || ack != [4]byte{0x20, 0x02, 0x00, 0x01} {
		t.Fatalf("want 3.1.1 CONNACK with return code 1, got % x, %v", ack, err)
	}
	expectClosed(t, conn)

	conn2 := dial(t, b)
	if _, err := conn2.Write(connect311("old")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn2, ack[:]); err != nil || ack != [4]byte{0x20, 0x02, 0x00, 0x00} {
		t.Fatalf("3.1.1 client refused: % x, %v", ack, err)
	}
}

func TestInlineClientAndDisabledCapture(t *testing.T) {
	b := StartT(t, Options{InlineClient: true, DisableCapture: true})
	conn := dial(t, b)
	connect5(t, conn, "sub")
	write(t, conn, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "a/b"}}, Properties: &packets.Properties{}})
	if cp := read(t, conn); cp.Type != packets.SUBACK {
		t.Fatalf("want SUBACK, got %s", cp.PacketType())
	}
	if err := b.Server().Publish("a/b", []byte("hi"), false, 0); err != nil {
		t.Fatal(err)
	}
	cp := read(t, conn)
	if pub, ok := cp.Content.(*packets.Publish); !ok || pub.Topic != "a/b" || string(pub.Payload) != "hi" {
		t.Fatalf("want PUBLISH a/b, got %s", cp)
	}
	if _, err := b.WaitPacket(testContext(t), "", FromClient, packets.CONNECT); !errors.Is(err, ErrCaptureDisabled) {
		t.Fatalf("WaitPacket with capture disabled: %v", err)
	}
	if b.Packets() != nil || b.LastSeq() != 0 {
		t.Fatal("packets recorded with capture disabled")
	}
}

func TestNoLeakAcrossManyConnections(t *testing.T) {
	leakcheck.VerifyNone(t)
	b := StartT(t, Options{})
	for _, id := range []string{"a", "b", "c", "a"} { // "a" twice: session takeover
		conn := dial(t, b)
		connect5(t, conn, id)
	}
}
