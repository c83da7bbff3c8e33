package eventloop_test

import (
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
)

// TestSlowLargeMessageKeepsAlive: on a thin link a large message takes
// longer to arrive than KeepAlive + PingTimeout, and the PINGRESP to the
// client's PINGREQ waits behind it. Bytes keep arriving all along, so
// the connection is alive: the message is delivered and the connection
// stays up (before the fix it was declared dead by the ping timeout).
func TestSlowLargeMessageKeepsAlive(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{KeepAlive: time.Second, PingTimeout: time.Second})
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
	// The broker reads what the client sends (PINGREQs) on its own
	// goroutine and answers only once the message is out.
	pings := make(chan int, 1)
	go func() {
		n := 0
		defer func() { pings <- n }()
		for {
			cp, err := peer.ReadPacket()
			if err != nil {
				return
			}
			if _, ok := cp.Content.(*packets.Pingreq); ok {
				n++
			}
		}
	}()
	// A QoS 0 PUBLISH of 4,000 bytes, dripped 100 bytes every 100 ms:
	// about 4 s, four times KeepAlive + PingTimeout.
	payload := make([]byte, 4000-4)
	msg := append([]byte{0x30, 0xA0, 0x1F, 0x00, 0x01, 't', 0x00}, payload...)
	if len(msg) != 3+4000 {
		t.Fatalf("bad test message: %d bytes", len(msg))
	}
	for i := 0; i < len(msg); i += 100 {
		if err := peer.Write(msg[i:min(i+100, len(msg))]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the thin link's pace, not a synchronization
	}
	m := expect[eventloop.Message](c)
	if len(m.Payload) != len(payload) {
		t.Fatalf("message of %d bytes, want %d", len(m.Payload), len(payload))
	}
	// Answer the PINGREQs now, then end the run normally.
	if err := peer.WritePacket(&packets.Pingresp{}); err != nil {
		t.Fatal(err)
	}
	c.send(eventloop.Disconnect{})
	if err := c.end(); !errors.Is(err, eventloop.ErrDisconnected) {
		t.Fatalf("run ended with %v, want ErrDisconnected (the connection stayed up)", err)
	}
	if n := <-pings; n == 0 {
		t.Fatal("the client sent no PINGREQ: the test proved nothing")
	}
}
