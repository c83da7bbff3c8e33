package eventloop_test

import (
	"errors"
	"os"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/reconnect"
)

// hostileCase is a broker misbehaving in one way (issue 9): connack is
// its CONNACK properties (nil: none), then, once it has read the
// client's publishes, it sends send.
type hostileCase struct {
	name    string
	connack *packets.Properties // refused at CONNACK when bad: the publishes are never sent
	send    []byte
	want    error
}

func u32(v uint32) *uint32 { return &v }
func u8(v byte) *byte      { return &v }

// TestHostileBroker is the table of hostile brokers: each case ends the
// run with the documented error, without a panic or a hang, and every
// QoS 1/2 publish handed to the loop is either still in the session
// (State) or was notified. (The loop's reaction to a poisoned message, a
// broker that stops reading, a slow large message and a broker holding
// every packet id have their own tests: TestPoisonMessage,
// TestBrokerStopsReading, TestSlowLargeMessageKeepsAlive,
// TestIncomingIDsDoNotStarve; bad requests: TestRequestValidation.)
func TestHostileBroker(t *testing.T) {
	cases := []hostileCase{
		{name: "CONNACK Maximum Packet Size 1", connack: &packets.Properties{MaximumPacketSize: u32(1)}, want: eventloop.ErrProtocol},
		{name: "CONNACK Maximum Packet Size 3", connack: &packets.Properties{MaximumPacketSize: u32(3)}, want: eventloop.ErrProtocol},
		{name: "CONNACK Maximum QoS 2", connack: &packets.Properties{MaximumQOS: u8(2)}, want: eventloop.ErrMalformedPacket},
		{name: "CONNACK Retain Available 2", connack: &packets.Properties{RetainAvailable: u8(2)}, want: eventloop.ErrMalformedPacket},
		{name: "DISCONNECT malformed packet", send: []byte{0xE0, 0x01, 0x81}, want: eventloop.ErrBrokerDisconnect},
		{name: "DISCONNECT receive maximum exceeded", send: []byte{0xE0, 0x01, 0x93}, want: eventloop.ErrBrokerDisconnect},
		{name: "PUBLISH topic with U+0000", send: []byte{0x30, 0x06, 0x00, 0x03, 'a', 0x00, 'b', 0x00}, want: eventloop.ErrMalformedPacket},
		{name: "PUBLISH topic not UTF-8", send: []byte{0x30, 0x05, 0x00, 0x02, 'a', 0xFF, 0x00}, want: eventloop.ErrMalformedPacket},
		{name: "PUBLISH user property not UTF-8", send: []byte{0x30, 0x0A, 0x00, 0x01, 't', 0x06, 0x26, 0x00, 0x01, 0xFF, 0x00, 0x00}, want: eventloop.ErrMalformedPacket},
		{name: "PUBLISH subscription identifier 0", send: []byte{0x30, 0x06, 0x00, 0x01, 't', 0x02, 0x0B, 0x00}, want: eventloop.ErrMalformedPacket},
		{name: "PUBLISH topic alias never granted", send: []byte{0x30, 0x07, 0x00, 0x01, 't', 0x03, 0x23, 0x00, 0x01}, want: eventloop.ErrProtocol},
		{name: "PUBLISH at QoS 3", send: []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, want: eventloop.ErrMalformedPacket},
		{name: "PUBACK for an unknown id", send: []byte{0x40, 0x02, 0x03, 0xE7}, want: eventloop.ErrProtocol},
		{name: "PUBREC for a QoS 1 publish", send: []byte{0x50, 0x02, 0x00, 0x01}, want: eventloop.ErrProtocol},
		{name: "second CONNACK", send: []byte{0x20, 0x03, 0x00, 0x00, 0x00}, want: eventloop.ErrProtocol},
		{name: "packet over our maximum", send: []byte{0x30, 0xFF, 0xFF, 0x7F}, want: eventloop.ErrPacketTooLarge},
		{name: "five-byte remaining length", send: []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, want: eventloop.ErrMalformedPacket},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testHostile(t, tc) })
	}
}

func testHostile(t *testing.T, tc hostileCase) {
	const n = 3
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{MaxPacketSize: 1 << 20, Reconnect: reconnect.Never})
	for i := 0; i < n; i++ {
		c.send(eventloop.Publish{Topic: "held", QoS: byte(1 + i%2), Payload: []byte{byte(i)}, Tag: i})
	}
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	if err := peer.SendConnack(false, 0, tc.connack); err != nil {
		t.Fatal(err)
	}
	if tc.send != nil {
		for i := 0; i < n; i++ {
			cp, err := peer.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cp.Content.(*packets.Publish); !ok {
				t.Fatalf("broker read %T, want PUBLISH", cp.Content)
			}
		}
		if err := peer.Write(tc.send); err != nil {
			t.Fatal(err)
		}
	}
	notified := 0
	var end error
	for nt := range c.out {
		switch nt := nt.(type) {
		case eventloop.Published, eventloop.Dropped:
			notified++
		case eventloop.RequestFailed:
			if _, ok := nt.Request.(eventloop.Publish); ok {
				notified++
			}
		}
	}
	end = c.err
	if !errors.Is(end, tc.want) {
		t.Fatalf("run ended with %v, want %v", end, tc.want)
	}
	// The client closes the connection, after a DISCONNECT naming the
	// broker's fault where MQTT 5 asks for one.
	for {
		h, _, err := peer.ReadRawPacket()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the client did not close the connection")
		}
		if err != nil {
			break
		}
		if h != 0xE0 {
			t.Fatalf("the client sent packet type %#x after the run ended", h>>4)
		}
	}
	st := c.loop.State()
	if got := st.InFlight() + st.Queued() + len(c.reqs) + notified; got != n {
		t.Fatalf("%d publishes in the session, %d in the channel, %d notified: want %d in all", st.InFlight()+st.Queued(), len(c.reqs), notified, n)
	}
}
