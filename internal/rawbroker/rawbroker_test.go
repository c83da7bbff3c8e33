package rawbroker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(DefaultTimeout))
	return conn
}

func TestScriptedSession(t *testing.T) {
	leakcheck.VerifyNone(t)
	s := Listen(t)
	if !strings.HasPrefix(s.URL(), "mqtt://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
	ctx := context.Background()
	client := dial(t, s)
	peer, err := s.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}

	c := &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "cli", CleanStart: true, KeepAlive: 5, Properties: &packets.Properties{}}
	if _, err := c.WriteTo(client); err != nil {
		t.Fatal(err)
	}
	got, err := peer.ExpectConnect()
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientID != "cli" || got.KeepAlive != 5 {
		t.Fatalf("CONNECT %s", got)
	}

	rm := uint16(3)
	if err := peer.SendConnack(true, 0, &packets.Properties{ReceiveMaximum: &rm}); err != nil {
		t.Fatal(err)
	}
	cp, err := packets.ReadPacket(client)
	if err != nil {
		t.Fatal(err)
	}
	ack, ok := cp.Content.(*packets.Connack)
	if !ok || !ack.SessionPresent || ack.ReasonCode != 0 || ack.Properties.ReceiveMaximum == nil || *ack.Properties.ReceiveMaximum != 3 {
		t.Fatalf("client got %s", cp)
	}

	// An acknowledgement for a packet id the client never used.
	if err := peer.WritePacket(&packets.Puback{PacketID: 77, Properties: &packets.Properties{}}); err != nil {
		t.Fatal(err)
	}
	cp, err = packets.ReadPacket(client)
	if err != nil || cp.Type != packets.PUBACK || cp.PacketID() != 77 {
		t.Fatalf("client got %v, %v", cp, err)
	}

	// Garbage: a PUBLISH announcing 268,435,455 bytes.
	garbage := []byte{0x30, 0xff, 0xff, 0xff, 0x7f}
	if err := peer.Write(garbage); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(garbage))
	if _, err := io.ReadFull(client, buf); err != nil || !bytes.Equal(buf, garbage) {
		t.Fatalf("client read % x, %v", buf, err)
	}

	// Packets the client sends after CONNECT.
	if _, err := (&packets.Pingreq{}).WriteTo(client); err != nil {
		t.Fatal(err)
	}
	if cp, err := peer.ReadPacket(); err != nil || cp.Type != packets.PINGREQ {
		t.Fatalf("peer read %v, %v", cp, err)
	}

	_ = client.Close()
	if err := peer.ExpectClosed(); err != nil {
		t.Fatal(err)
	}
}

func TestReadRawPacketAndConnack311(t *testing.T) {
	s := Listen(t)
	client := dial(t, s)
	peer, err := s.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	connect := []byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 0}
	if _, err := client.Write(connect); err != nil {
		t.Fatal(err)
	}
	header, body, err := peer.ReadRawPacket()
	if err != nil || header != 0x10 || !bytes.Equal(body, connect[2:]) {
		t.Fatalf("raw read %x % x, %v", header, body, err)
	}
	if err := peer.SendConnack311(false, 0); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(client, ack[:]); err != nil || ack != [4]byte{0x20, 2, 0, 0} {
		t.Fatalf("client read % x, %v", ack, err)
	}

	// A remaining length of five bytes is refused.
	if _, err := client.Write([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := peer.ReadRawPacket(); err == nil {
		t.Fatal("no error for a 5-byte remaining length")
	}
}

func TestExpectClosedFailures(t *testing.T) {
	s := Listen(t)
	client := dial(t, s)
	peer, err := s.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte{0xC0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := peer.ExpectClosed(); err == nil {
		t.Fatal("ExpectClosed accepted data")
	}
	peer.SetTimeout(10 * time.Millisecond) // the client keeps the connection open
	if err := peer.ExpectClosed(); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("ExpectClosed on an open connection: %v", err)
	}
}

func TestAcceptContextAndClose(t *testing.T) {
	s := Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept with cancelled ctx: %v", err)
	}

	// Cancel while Accept may be blocked (or not yet): either way it returns
	// the context's error.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go cancel2()
	if _, err := s.Accept(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Accept cancelled while waiting: %v", err)
	}

	// The listener still works afterwards.
	client := dial(t, s)
	if _, err := s.Accept(context.Background()); err != nil {
		t.Fatalf("Accept after cancellation: %v", err)
	}

	// Close closes accepted connections and the listener.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, err := client.Read(b[:]); n != 0 || err == nil {
		t.Fatalf("client read %d, %v after Close", n, err)
	}
	if _, err := s.Accept(context.Background()); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}
