package eventloop_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// TestSessionPresent: a session the broker keeps is reported present at
// the next connection, and a clean one is not, with MQTT 5 (SessionExpiry)
// and MQTT 3.1.1 (CleanStart false) alike.
func TestSessionPresent(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		id := uniqueID("present")
		topic := uniqueID("present")
		keep := b.portable(eventloop.Options{ClientID: id, SessionExpiry: time.Hour})
		first := b.start(t, keep)
		first.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		first.send(eventloop.Disconnect{})
		mustIs(t, first.end(), eventloop.ErrDisconnected)
		b.awaitOffline(t, id)

		// The broker kept the subscription: a message published while the
		// client is away is delivered when it comes back.
		other := b.start(t, eventloop.Options{})
		other.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("while away")})
		expect[eventloop.Published](other)
		if b.mochi != nil {
			// mochi sends PUBACK before it hands the message to the
			// subscribers (server.go processPublish): a reconnect in
			// between inherits the session before the message reaches it,
			// and the message goes to the old one (failed once in a full
			// run). Wait until the kept session holds it.
			if !leakcheck.Poll(testTimeout, func() bool {
				cl, ok := b.mochi.Server().Clients.Get(id)
				return ok && cl.State.Inflight.Len() > 0
			}) {
				t.Fatalf("mochi did not queue the message for the session of %s", id)
			}
		}

		second := b.newClient(t, keep)
		if c := second.expectConnected(); !c.SessionPresent {
			t.Fatal("session not present after reconnecting to a kept session")
		}
		if m := expect[eventloop.Message](second); string(m.Payload) != "while away" {
			t.Fatalf("got %q", m.Payload)
		}
		second.send(eventloop.Disconnect{})
		mustIs(t, second.end(), eventloop.ErrDisconnected)

		clean := keep
		clean.CleanStart = true
		clean.SessionExpiry = 0
		third := b.newClient(t, clean)
		if c := third.expectConnected(); c.SessionPresent {
			t.Fatal("session present with CleanStart")
		}
	})
}

// TestBrokerRefusesMQTT5: an MQTT 5 client meeting a broker that answers
// like a 3.1.1-only broker (CONNACK 20 02 00 01) gets a clear, permanent
// error naming the protocol version, under every reconnect policy; an
// MQTT 3.1.1 client connects to the same broker.
func TestBrokerRefusesMQTT5(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{RefuseMQTT5: true})
	for _, policy := range []reconnect.Policy{reconnect.Never, reconnect.Automatic} {
		t.Run(policy.String(), func(t *testing.T) {
			c := newClient(t, b.URL(), eventloop.Options{Reconnect: policy, BackOff: quickBackOff()})
			err := c.end()
			mustIs(t, err, eventloop.ErrConnectionLost)
			mustIs(t, err, eventloop.ErrConnectRefused)
			var rerr *eventloop.ReasonCodeError
			if !errors.As(err, &rerr) || rerr.Code != 0x84 || rerr.Packet != "CONNACK" {
				t.Fatalf("error %v: want a CONNACK ReasonCodeError 0x84", err)
			}
			for _, want := range []string{"refused MQTT 5", "unsupported protocol version", "ProtocolVersion 4"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	c := startClient(t, b.URL(), eventloop.Options{ProtocolVersion: 4})
	c.send(eventloop.Publish{Topic: "v311/ok", QoS: 1})
	expect[eventloop.Published](c)
}

// TestConnack311ReturnCodes: a 3.1.1 broker's refusals map to the MQTT 5
// reason codes of the same meaning, so they end the run like their MQTT 5
// counterparts; the CONNECT the client sent is a 3.1.1 CONNECT.
func TestConnack311ReturnCodes(t *testing.T) {
	for rc, want := range map[byte]byte{1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87} {
		t.Run(eventloop.ReasonCodeName(want), func(t *testing.T) {
			srv := rawbroker.Listen(t)
			policy := reconnect.Automatic
			if want == 0x88 { // server unavailable is worth retrying
				policy = reconnect.Never
			}
			c := newClient(t, srv.URL(), eventloop.Options{ProtocolVersion: 4, ClientID: "dev-1", Username: "u", Password: []byte("pw"),
				CleanStart: true, Reconnect: policy, BackOff: quickBackOff(),
				Will: &eventloop.Will{Topic: "w", Payload: []byte("x"), QoS: 1, Retain: true}})
			peer, err := srv.Accept(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			header, body, err := peer.ReadRawPacket()
			if err != nil {
				t.Fatal(err)
			}
			wantConnect := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x80 | 0x40 | 0x20 | 1<<3 | 0x04 | 0x02, 0, 60,
				0, 5, 'd', 'e', 'v', '-', '1', 0, 1, 'w', 0, 1, 'x', 0, 1, 'u', 0, 2, 'p', 'w'}
			if header != 0x10 || !bytes.Equal(body, wantConnect) {
				t.Fatalf("CONNECT %02x % x\nwant 10 % x", header, body, wantConnect)
			}
			if err := peer.SendConnack311(false, rc); err != nil {
				t.Fatal(err)
			}
			err = c.end()
			mustIs(t, err, eventloop.ErrConnectRefused)
			var rerr *eventloop.ReasonCodeError
			if !errors.As(err, &rerr) || rerr.Code != want {
				t.Fatalf("return code %d: error %v, want reason code %#02x", rc, err, want)
			}
		})
	}
}

// TestSuback311Failure: a 3.1.1 SUBACK return code 0x80 is a failed
// subscription, reported like MQTT 5's.
func TestSuback311Failure(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{ProtocolVersion: 4, ClientID: "s"})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := peer.ReadRawPacket(); err != nil {
		t.Fatal(err)
	}
	if err := peer.SendConnack311(true, 0); err != nil {
		t.Fatal(err)
	}
	if !c.expectConnected().SessionPresent {
		t.Fatal("session present flag lost")
	}
	c.send(eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "ok", QoS: 2}, {Topic: "denied", QoS: 1}}})
	header, body, err := peer.ReadRawPacket()
	if err != nil {
		t.Fatal(err)
	}
	if header != 0x82 || !bytes.Equal(body[2:], []byte{0, 2, 'o', 'k', 2, 0, 6, 'd', 'e', 'n', 'i', 'e', 'd', 1}) {
		t.Fatalf("SUBSCRIBE %02x % x", header, body)
	}
	if err := peer.Write([]byte{0x90, 4, body[0], body[1], 2, 0x80}); err != nil {
		t.Fatal(err)
	}
	s := expect[eventloop.Subscribed](c)
	if !bytes.Equal(s.ReasonCodes, []byte{2, 0x80}) {
		t.Fatalf("reason codes % x", s.ReasonCodes)
	}
	var rerr *eventloop.ReasonCodeError
	if err := s.Err(); !errors.As(err, &rerr) || rerr.Code != 0x80 {
		t.Fatalf("Subscribed.Err() = %v, want reason code 0x80", err)
	}
	c.send(eventloop.Unsubscribe{Topics: []string{"ok"}})
	header, body, err = peer.ReadRawPacket()
	if err != nil || header != 0xA2 {
		t.Fatalf("UNSUBSCRIBE %02x % x %v", header, body, err)
	}
	if err := peer.Write([]byte{0xB0, 2, body[0], body[1]}); err != nil {
		t.Fatal(err)
	}
	if u := expect[eventloop.Unsubscribed](c); !bytes.Equal(u.ReasonCodes, []byte{0}) || u.Err() != nil {
		t.Fatalf("Unsubscribed %+v", u)
	}
}

// TestV5SessionResumedOnV4: a session saved by an MQTT 5 loop may hold a
// publish with properties; resumed with ProtocolVersion 4, that publish
// fails alone (it cannot be encoded), the connection and the rest go on.
func TestV5SessionResumedOnV4(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("cross")
	first := startClient(t, b.URL(), eventloop.Options{ClientID: id})
	first.send(eventloop.Pause{})
	first.send(eventloop.Publish{Topic: "cross/props", QoS: 1, Properties: &eventloop.Properties{ContentType: "text/plain"}})
	first.send(eventloop.Publish{Topic: "cross/plain", QoS: 1})
	first.send(eventloop.Shutdown{})
	mustIs(t, first.end(), eventloop.ErrStopped)

	second := startClient(t, b.URL(), eventloop.Options{ClientID: id, ProtocolVersion: 4, CleanStart: true, Session: first.loop.State()})
	var failed, published bool
	for !failed || !published {
		switch n := second.next().(type) {
		case eventloop.RequestFailed:
			mustIs(t, n.Err, eventloop.ErrInvalidRequest)
			mustIs(t, n.Err, eventloop.ErrMQTT5Only)
			if p, ok := n.Request.(eventloop.Publish); !ok || p.Topic != "cross/props" {
				t.Fatalf("failed: %+v", n)
			}
			failed = true
		case eventloop.Published:
			if n.Request.Topic != "cross/plain" {
				t.Fatalf("published %+v", n.Request)
			}
			published = true
		case eventloop.Disconnected:
			t.Fatalf("disconnected: %v", n.Err)
		}
	}
}

// TestBrokerClosesOnMQTT5: a broker that closes the connection when it
// reads an MQTT 5 CONNECT (as some 3.1.1-only brokers do) ends the run
// with an error that points at ProtocolVersion.
func TestBrokerClosesOnMQTT5(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	peer.Conn().Close()
	err = c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, io.EOF)
	if !strings.Contains(err.Error(), "ProtocolVersion") {
		t.Fatalf("error %q does not point at ProtocolVersion", err)
	}
}
