package sink

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

const testTimeout = 10 * time.Second

type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, s *Sink) *client {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testTimeout))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) send(p packets.Packet) {
	c.t.Helper()
	var typ byte
	switch p.(type) {
	case *packets.Connect:
		typ = packets.CONNECT
	case *packets.Publish:
		typ = packets.PUBLISH
	case *packets.Pubrel:
		typ = packets.PUBREL
	case *packets.Subscribe:
		typ = packets.SUBSCRIBE
	case *packets.Unsubscribe:
		typ = packets.UNSUBSCRIBE
	case *packets.Pingreq:
		typ = packets.PINGREQ
	case *packets.Disconnect:
		typ = packets.DISCONNECT
	}
	cp := packets.NewControlPacket(typ)
	cp.Content = p
	if pub, ok := p.(*packets.Publish); ok {
		cp.Flags = pub.QoS << 1
	}
	if _, err := cp.WriteTo(c.nc); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read() *packets.ControlPacket {
	c.t.Helper()
	cp, err := packets.ReadPacket(c.br)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return cp
}

func (c *client) connect(v byte) *packets.Connack {
	c.t.Helper()
	c.send(&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: v, ClientID: "x", CleanStart: true, Properties: &packets.Properties{}})
	if v != 5 {
		// paho's reader decodes MQTT 5 only: check the raw bytes.
		got := make([]byte, 4)
		if _, err := io.ReadFull(c.br, got); err != nil {
			c.t.Fatal(err)
		}
		if string(got) != "\x20\x02\x00\x00" {
			c.t.Fatalf("CONNACK %x", got)
		}
		return nil
	}
	ack, ok := c.read().Content.(*packets.Connack)
	if !ok || ack.ReasonCode != 0 {
		c.t.Fatalf("no successful CONNACK: %#v", ack)
	}
	return ack
}

func TestAcks(t *testing.T) {
	s := StartT(t, Options{ReceiveMaximum: 65535})
	c := dial(t, s)
	ack := c.connect(5)
	if rm := ack.Properties.ReceiveMaximum; rm == nil || *rm != 65535 {
		t.Fatalf("receive maximum %v", rm)
	}
	props := &packets.Properties{}
	c.send(&packets.Publish{Topic: "a/topic/of/some/length", QoS: 1, PacketID: 7, Payload: []byte("x"), Properties: props})
	if p, ok := c.read().Content.(*packets.Puback); !ok || p.PacketID != 7 {
		t.Fatalf("want PUBACK 7, got %#v", p)
	}
	c.send(&packets.Publish{Topic: "b", QoS: 2, PacketID: 300, Payload: []byte("y"), Properties: props})
	if p, ok := c.read().Content.(*packets.Pubrec); !ok || p.PacketID != 300 {
		t.Fatalf("want PUBREC 300, got %#v", p)
	}
	c.send(&packets.Pubrel{PacketID: 300, Properties: props})
	if p, ok := c.read().Content.(*packets.Pubcomp); !ok || p.PacketID != 300 {
		t.Fatalf("want PUBCOMP 300, got %#v", p)
	}
	c.send(&packets.Publish{Topic: "c", QoS: 0, Payload: []byte("z"), Properties: props})
	c.send(&packets.Pingreq{})
	if _, ok := c.read().Content.(*packets.Pingresp); !ok {
		t.Fatal("want PINGRESP")
	}
	c.send(&packets.Subscribe{PacketID: 9, Properties: props, Subscriptions: []packets.SubOptions{{Topic: "a/#", QoS: 1}, {Topic: "b", QoS: 2}}})
	if p, ok := c.read().Content.(*packets.Suback); !ok || p.PacketID != 9 || string(p.Reasons) != "\x01\x02" {
		t.Fatalf("want SUBACK 9 [1 2], got %#v", p)
	}
	c.send(&packets.Unsubscribe{PacketID: 10, Properties: props, Topics: []string{"a/#", "b"}})
	if p, ok := c.read().Content.(*packets.Unsuback); !ok || p.PacketID != 10 || len(p.Reasons) != 2 {
		t.Fatalf("want UNSUBACK 10, got %#v", p)
	}
	c.send(&packets.Disconnect{Properties: props})
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF after DISCONNECT, got %v", err)
	}
	if got := s.Published(); got != 3 {
		t.Fatalf("Published() = %d, want 3", got)
	}
}

func TestMQTT311(t *testing.T) {
	s := StartT(t, Options{})
	c := dial(t, s)
	c.connect(4)
	c.send(&packets.Pingreq{})
	got := make([]byte, 2)
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "\xd0\x00" {
		t.Fatalf("PINGRESP %x %v", got, err)
	}
}

func TestStream(t *testing.T) {
	s := StartT(t, Options{})
	c := dial(t, s)
	c.connect(5)
	const n, size = 5000, 100
	topic := StreamTopic(n, size)
	c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: topic}}})
	if _, ok := c.read().Content.(*packets.Suback); !ok {
		t.Fatal("want SUBACK first")
	}
	for i := range n {
		p, ok := c.read().Content.(*packets.Publish)
		if !ok || p.Topic != topic || len(p.Payload) != size || p.QoS != 0 {
			t.Fatalf("message %d: %#v", i, p)
		}
	}
	c.send(&packets.Pingreq{})
	if _, ok := c.read().Content.(*packets.Pingresp); !ok {
		t.Fatal("want PINGRESP after the stream")
	}
	if got := s.Streamed(); got != n {
		t.Fatalf("Streamed() = %d", got)
	}
}

// TestCloseStopsEverything closes a sink with a connection that is in the
// middle of a stream nobody reads and one that never sent anything, and
// checks that no goroutine of the sink is left when Close returns.
func TestCloseStopsEverything(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.connect(5)
	c.send(&packets.Subscribe{PacketID: 1, Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{{Topic: StreamTopic(1_000_000, 1000)}}})
	if _, ok := c.read().Content.(*packets.Suback); !ok {
		t.Fatal("want SUBACK")
	}
	dial(t, s) // a connection that never sends anything
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returns once every goroutine of the sink called Done on its
	// WaitGroup; a goroutine may still be executing its last instructions
	// after that, so wait (bounded) for them to be gone.
	var stacks string
	gone := leakcheck.Poll(10*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "sink.(*Sink)") && !strings.Contains(stacks, "sink.(*conn)")
	})
	if !gone {
		t.Fatalf("goroutines left after Close:\n%s", stacks)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
