package eventloop_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
)

// TestBrokerSendsBadInput makes a scripted broker send bytes a broker must
// not send, after the client handed it three QoS 1 publishes that were not
// acknowledged. Each time the connection ends with a clear error, nothing
// panics, and the three publishes are still in the session (none dropped).
func TestBrokerSendsBadInput(t *testing.T) {
	cases := []struct {
		name string
		send []byte
		want error
	}{
		{"packet type 0", []byte{0x00, 0x00}, eventloop.ErrMalformedPacket},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), eventloop.ErrMalformedPacket},
		{"remaining length over the maximum", []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, eventloop.ErrPacketTooLarge},
		{"five-byte remaining length", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, eventloop.ErrMalformedPacket},
		{"publish with truncated topic", []byte{0x32, 0x02, 0x00, 0x05}, eventloop.ErrMalformedPacket},
		{"publish at QoS 3", []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, eventloop.ErrMalformedPacket},
		{"PUBACK for an unknown packet id", []byte{0x40, 0x02, 0x03, 0xE7}, eventloop.ErrProtocol},
		{"PUBCOMP for a QoS 1 publish", []byte{0x70, 0x02, 0x00, 0x01}, eventloop.ErrProtocol},
		{"SUBSCRIBE from the broker", []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00}, eventloop.ErrMalformedPacket},
		{"second CONNACK", []byte{0x20, 0x03, 0x00, 0x00, 0x00}, eventloop.ErrProtocol},
		{"closed mid-packet", []byte{0x30, 0x10, 0x00}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := rawbroker.Listen(t)
			c := newClient(t, srv.URL(), eventloop.Options{MaxPacketSize: 1 << 20})
			peer, err := srv.Accept(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := peer.ExpectConnect(); err != nil {
				t.Fatal(err)
			}
			if err := peer.SendConnack(false, 0, nil); err != nil {
				t.Fatal(err)
			}
			c.expectConnected()
			for i := 0; i < 3; i++ {
				c.send(eventloop.Publish{Topic: "held", QoS: 1, Payload: []byte{byte(i)}})
			}
			for i := 0; i < 3; i++ {
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
			peer.Close()
			err = c.end()
			if !errors.Is(err, eventloop.ErrConnectionLost) {
				t.Fatalf("run ended with %v, want ErrConnectionLost", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("run ended with %v, want %v", err, tc.want)
			}
			if n := c.loop.State().InFlight(); n != 3 {
				t.Fatalf("%d publishes in the session after the failure, want all 3", n)
			}
		})
	}
}

// TestBrokerRefusesConnect: a CONNACK failure code ends the run with the
// broker's reason.
func TestBrokerRefusesConnect(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{Username: "u", Password: []byte("s3cret-pw")})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := peer.ExpectConnect()
	if err != nil {
		t.Fatal(err)
	}
	if string(conn.Password) != "s3cret-pw" || conn.Username != "u" {
		t.Fatalf("credentials not sent: %q", conn.Username)
	}
	if err := peer.SendConnack(false, 0x86, nil); err != nil {
		t.Fatal(err)
	}
	err = c.end()
	mustIs(t, err, eventloop.ErrConnectRefused)
	var rerr *eventloop.ReasonCodeError
	if !errors.As(err, &rerr) || rerr.Code != 0x86 {
		t.Fatalf("error %v does not carry reason 0x86", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatal("the password appears in the error")
	}
}

// TestBrokerSendsNoConnack: a broker that answers CONNECT with something
// else is a protocol error.
func TestBrokerSendsNoConnack(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	if err := peer.Write([]byte{0xD0, 0x00}); err != nil { // PINGRESP
		t.Fatal(err)
	}
	mustIs(t, c.end(), eventloop.ErrProtocol)
}
