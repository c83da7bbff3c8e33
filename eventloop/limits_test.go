package eventloop_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
)

// TestConnackPacketSizeTooSmall: a broker whose Maximum Packet Size is
// too small for an acknowledgement (or 0, a protocol error) is refused
// at CONNACK with ErrProtocol: the run ends instead of swallowing
// messages whose acks cannot be sent or spinning on a PINGREQ that does
// not fit. At 4 bytes, the smallest that works, QoS 1 and 2 messages are
// delivered and acknowledged.
func TestConnackPacketSizeTooSmall(t *testing.T) {
	for _, mps := range []uint32{0, 1, 2, 3} {
		t.Run(fmt.Sprint(mps), func(t *testing.T) {
			srv := rawbroker.Listen(t)
			c := newClient(t, srv.URL(), eventloop.Options{})
			peer, err := srv.Accept(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := peer.ExpectConnect(); err != nil {
				t.Fatal(err)
			}
			if err := peer.SendConnack(false, 0, &packets.Properties{MaximumPacketSize: &mps}); err != nil {
				t.Fatal(err)
			}
			err = c.end()
			want := eventloop.ErrProtocol
			if mps == 0 {
				want = eventloop.ErrMalformedPacket // the decoder refuses it already
			}
			if !errors.Is(err, want) {
				t.Fatalf("run ended with %v, want %v", err, want)
			}
			if err := peer.ExpectClosed(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("4", func(t *testing.T) {
		srv := rawbroker.Listen(t)
		c := newClient(t, srv.URL(), eventloop.Options{})
		peer, err := srv.Accept(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.ExpectConnect(); err != nil {
			t.Fatal(err)
		}
		mps := uint32(4)
		if err := peer.SendConnack(false, 0, &packets.Properties{MaximumPacketSize: &mps}); err != nil {
			t.Fatal(err)
		}
		c.expectConnected()
		// QoS 1 id 1 and QoS 2 id 2, topic "t", payload "x".
		if err := peer.Write([]byte{0x32, 0x07, 0x00, 0x01, 't', 0x00, 0x01, 0x00, 'x', 0x34, 0x07, 0x00, 0x01, 't', 0x00, 0x02, 0x00, 'x'}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			m := expect[eventloop.Message](c)
			if m.QoS != byte(i+1) {
				t.Fatalf("message %d at QoS %d", i, m.QoS)
			}
		}
		for _, want := range []byte{packets.PUBACK, packets.PUBREC} {
			cp, err := peer.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if cp.FixedHeader.Type != want {
				t.Fatalf("broker read %s, want type %d", cp.PacketType(), want)
			}
		}
	})
}
