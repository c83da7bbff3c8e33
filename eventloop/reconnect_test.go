package eventloop_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state"
)

// quickBackOff retries every 20 ms: tests wait on notifications, never on
// the clock, so the delay only has to be short.
func quickBackOff() backoff.BackOff { return &backoff.ConstantBackOff{Interval: 20 * time.Millisecond} }

func requireMosquitto(t *testing.T) {
	t.Helper()
	if !mosquittoInstalled() {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto is not installed (CI is set): apt-get install -y mosquitto")
		}
		t.Skip("mosquitto not installed: apt-get install -y mosquitto")
	}
}

// TestReconnectAfterBrokerRestart: under Automatic, a broker restart is
// survived; requests made while offline are queued and sent after; the
// persistent session replays.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	requireMosquitto(t)
	m := mosquitto.Start(t, mosquitto.Options{Extra: []string{"persistence false"}})
	c := startClient(t, m.URL(), eventloop.Options{Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	topic := uniqueID("restart")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})

	m.Stop()
	d := expect[eventloop.Disconnected](c)
	if d.Err == nil {
		t.Fatal("Disconnected without a cause")
	}
	r := expect[eventloop.Reconnecting](c)
	if r.Attempt != 1 || r.Err == nil {
		t.Fatalf("first Reconnecting: %+v", r)
	}
	// Offline: the publish is queued, not lost.
	c.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("while offline")})
	m.Restart()
	conn := expect[eventloop.Connected](c)
	if conn.SessionPresent {
		t.Fatal("a restarted broker without persistence cannot have the session")
	}
	// The subscription was re-established and the queued publish sent.
	got, acked := false, false
	for !got || !acked {
		switch n := c.next().(type) {
		case eventloop.Message:
			if string(n.Payload) != "while offline" {
				t.Fatalf("got %q", n.Payload)
			}
			got = true
		case eventloop.Published:
			acked = true
		case eventloop.Subscribed:
			// the re-subscription
		case eventloop.Disconnected, eventloop.RequestFailed:
			t.Fatalf("unexpected %#v", n)
		}
	}
}

// TestAfterFirstSuccessFailsFast: a wrong address ends the run at once.
func TestAfterFirstSuccessFailsFast(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	url := b.URL()
	b.Close()
	c := newClient(t, url, eventloop.Options{Reconnect: reconnect.AfterFirstSuccess, BackOff: quickBackOff()})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
}

// TestAutomaticRotatesServers: a server that fails is followed at once by
// the next of Servers, without a retry delay (see also
// TestFallbackToNextServer).
func TestAutomaticRotatesServers(t *testing.T) {
	dead := mqtttest.StartT(t, mqtttest.Options{})
	deadURL := dead.URL()
	dead.Close()
	alive := mqtttest.StartT(t, mqtttest.Options{})
	c := newClient(t, "", eventloop.Options{
		Servers:   []string{deadURL, alive.URL()},
		Reconnect: reconnect.Automatic,
		BackOff:   quickBackOff(),
	})
	conn, ok := c.next().(eventloop.Connected)
	if !ok {
		t.Fatalf("first notification is not Connected")
	}
	if conn.Server != alive.URL() {
		t.Fatalf("connected to %s, want %s", conn.Server, alive.URL())
	}
}

// TestPermanentRefusalEndsRun: bad credentials end the run even under
// Automatic.
func TestPermanentRefusalEndsRun(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	if err := peer.SendConnack(false, 0x86, nil); err != nil {
		t.Fatal(err)
	}
	err = c.end()
	mustIs(t, err, eventloop.ErrConnectRefused)
	var rerr *eventloop.ReasonCodeError
	if !errors.As(err, &rerr) || rerr.Code != 0x86 {
		t.Fatalf("%v", err)
	}
}

// TestTransientRefusalRetries: "server busy" is retried.
func TestTransientRefusalRetries(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	for i, code := range []byte{0x89, 0x00} {
		peer, err := srv.Accept(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.ExpectConnect(); err != nil {
			t.Fatal(err)
		}
		if err := peer.SendConnack(false, code, nil); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r := expect[eventloop.Reconnecting](c)
			mustIs(t, r.Err, eventloop.ErrConnectRefused)
		}
	}
	c.expectConnected()
}

// TestResubscribeAfterSessionLost: a broker-side kick with no session
// expiry loses the session; the loop re-subscribes and messages flow.
func TestResubscribeAfterSessionLost(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("resub")
	c := startClient(t, b.URL(), eventloop.Options{ClientID: id, Reconnect: reconnect.AfterFirstSuccess, BackOff: quickBackOff()})
	topic := uniqueID("resub")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	if err := b.DisconnectClient(id, 0x98); err != nil {
		t.Fatal(err)
	}
	expect[eventloop.Disconnected](c)
	conn := expect[eventloop.Connected](c)
	if conn.SessionPresent {
		t.Fatal("session present with SessionExpiry 0")
	}
	s := expect[eventloop.Subscribed](c)
	if len(s.ReasonCodes) != 1 || s.ReasonCodes[0] != 1 {
		t.Fatalf("re-subscription: %+v", s)
	}
	other := startClient(t, b.URL(), eventloop.Options{})
	other.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("after")})
	if m := expect[eventloop.Message](c); string(m.Payload) != "after" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestShutdownAndResume: Shutdown with publishes queued, then a new loop
// from the saved session delivers them.
func TestShutdownAndResume(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		topic := uniqueID("resume")
		watcher := b.start(t, eventloop.Options{})
		watcher.subscribe(eventloop.Filter{Topic: topic, QoS: 2})

		id := uniqueID("resume")
		first := b.start(t, b.portable(eventloop.Options{ClientID: id, SessionExpiry: time.Hour}))
		first.send(eventloop.Pause{})
		for i := 0; i < 5; i++ {
			first.send(eventloop.Publish{Topic: topic, QoS: byte(1 + i%2), Payload: []byte{byte(i)}})
		}
		first.send(eventloop.Shutdown{})
		mustIs(t, first.end(), eventloop.ErrStopped)
		if q := first.loop.State().Queued(); q != 5 {
			t.Fatalf("%d queued after shutdown, want 5", q)
		}
		// Through a file, as a process that stops and starts again would.
		path := filepath.Join(t.TempDir(), "session.mqls")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := first.loop.State().Save(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		saved := loadFile(t, path)
		// A damaged copy is refused whole.
		raw, _ := os.ReadFile(path)
		raw[len(raw)/2] ^= 0x40
		if _, err := state.Load(bytes.NewReader(raw)); !errors.Is(err, state.ErrCorruptState) {
			t.Fatalf("corrupt file: error %v, want ErrCorruptState", err)
		}

		second := b.start(t, b.portable(eventloop.Options{ClientID: id, SessionExpiry: time.Hour, Session: saved}))
		acked := 0
		for acked < 5 {
			if _, ok := second.next().(eventloop.Published); ok {
				acked++
			}
		}
		seen := map[byte]bool{}
		for len(seen) < 5 {
			m := expect[eventloop.Message](watcher)
			if seen[m.Payload[0]] {
				t.Fatalf("message %d twice", m.Payload[0])
			}
			seen[m.Payload[0]] = true
		}
	})
}

func TestThrottleValidation(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	c := startClient(t, b.URL(), eventloop.Options{})
	c.send(eventloop.Throttle{PerSecond: -1})
	rf := expect[eventloop.RequestFailed](c)
	mustIs(t, rf.Err, eventloop.ErrInvalidRequest)
	// A generous cap lets everything through, in order.
	c.send(eventloop.Throttle{PerSecond: 1e6, Burst: 10})
	for i := 0; i < 20; i++ {
		c.send(eventloop.Publish{Topic: "throttled", QoS: 1, Tag: i})
	}
	for i := 0; i < 20; i++ {
		p := expect[eventloop.Published](c)
		if p.Request.Tag != i {
			t.Fatalf("publish %v acknowledged as #%d", p.Request.Tag, i)
		}
	}
}

func loadFile(t *testing.T, path string) *state.MqttState {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := state.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestAckTimeoutReplaysOnNewConnection: a broker that never acknowledges
// makes the loop drop the connection after AckTimeout; on the next
// connection (session present) the publish is replayed with DUP set and
// its original packet id.
func TestAckTimeoutReplaysOnNewConnection(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{
		Reconnect: reconnect.Automatic, BackOff: quickBackOff(),
		// The replay on the second connection must be acked within
		// AckTimeout too; 50 ms was too short for the test's own reply
		// on a loaded machine.
		AckTimeout: time.Second, SessionExpiry: time.Hour,
	})
	ctx := testContext(t)
	peer, err := srv.Accept(ctx)
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
	c.send(eventloop.Publish{Topic: "slow", QoS: 1, Payload: []byte("x"), Tag: "mine"})
	first, err := peer.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	pub := first.Content.(*packets.Publish)
	// No PUBACK: the loop must give up on this connection.
	d := expect[eventloop.Disconnected](c)
	mustIs(t, d.Err, eventloop.ErrAckTimeout)

	peer2, err := srv.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := peer2.ExpectConnect(); err != nil || conn.CleanStart {
		t.Fatalf("reconnect: %v, clean start %v", err, conn != nil && conn.CleanStart)
	}
	if err := peer2.SendConnack(true, 0, nil); err != nil {
		t.Fatal(err)
	}
	again, err := peer2.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	rp, ok := again.Content.(*packets.Publish)
	if !ok || !rp.Duplicate || rp.PacketID != pub.PacketID || string(rp.Payload) != "x" {
		t.Fatalf("replay: %+v, want DUP PUBLISH id %d", again.Content, pub.PacketID)
	}
	if err := peer2.WritePacket(&packets.Puback{PacketID: rp.PacketID}); err != nil {
		t.Fatal(err)
	}
	p := expect[eventloop.Published](c)
	if p.Request.Tag != "mine" {
		t.Fatalf("Published for %+v", p.Request)
	}
}

// TestOfflineQoS0: QoS 0 publishes made while offline are dropped (and
// reported) with DropQoS0WhileOffline, queued otherwise; QoS 1 is always
// queued.
func TestOfflineQoS0(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			b := mqtttest.StartT(t, mqtttest.Options{})
			id := uniqueID("offline")
			c := startClient(t, b.URL(), eventloop.Options{ClientID: id, Reconnect: reconnect.Automatic,
				BackOff: &backoff.ConstantBackOff{Interval: time.Hour}, DropQoS0WhileOffline: drop})
			if err := b.DisconnectClient(id, 0x98); err != nil {
				t.Fatal(err)
			}
			expect[eventloop.Reconnecting](c)
			c.send(eventloop.Publish{Topic: "offline", QoS: 0, Tag: "q0"})
			c.send(eventloop.Publish{Topic: "offline", QoS: 1, Tag: "q1"})
			c.send(eventloop.Shutdown{})
			var dropped []any
			for {
				n, ok := <-c.out
				if !ok {
					break
				}
				if d, isDrop := n.(eventloop.Dropped); isDrop {
					mustIs(t, d.Reason, eventloop.ErrOffline)
					dropped = append(dropped, d.Request.(eventloop.Publish).Tag)
				}
			}
			mustIs(t, c.err, eventloop.ErrStopped)
			queued := c.loop.State().Queued()
			if drop {
				if len(dropped) != 1 || dropped[0] != "q0" || queued != 1 {
					t.Fatalf("dropped %v, %d queued; want q0 dropped, q1 queued", dropped, queued)
				}
			} else if len(dropped) != 0 || queued != 2 {
				t.Fatalf("dropped %v, %d queued; want nothing dropped, 2 queued", dropped, queued)
			}
		})
	}
}

// TestStaleManualAck: an ack still owed for a message of a broker session
// that was lost is refused, so it cannot acknowledge a newer message that
// reuses the packet id (found by the simulation, seed 1006).
func TestStaleManualAck(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("stale")
	topic := uniqueID("stale")
	c := startClient(t, b.URL(), eventloop.Options{ClientID: id, ManualAcks: true, Reconnect: reconnect.AfterFirstSuccess, BackOff: quickBackOff()})
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	pub := startClient(t, b.URL(), eventloop.Options{})
	pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("old")})
	old := expect[eventloop.Message](c)
	if err := b.DisconnectClient(id, 0x98); err != nil { // SessionExpiry 0: the session goes
		t.Fatal(err)
	}
	if conn := expect[eventloop.Connected](c); conn.SessionPresent {
		t.Fatal("session present")
	}
	expect[eventloop.Subscribed](c) // the re-subscription
	c.send(old.Ack())
	rf := expect[eventloop.RequestFailed](c)
	mustIs(t, rf.Err, eventloop.ErrStaleAck)
	// A message of the new session is acked normally.
	pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("new")})
	m := expect[eventloop.Message](c)
	c.send(m.Ack())
	c.send(eventloop.Ack{PacketID: m.PacketID, QoS: 1}) // a second ack: nothing awaits it
	mustIs(t, expect[eventloop.RequestFailed](c).Err, eventloop.ErrUnknownPacketID)
}

// TestReconnectReplayEveryTransport: a publisher with QoS 1 and 2 messages
// in flight loses its connection (another connection takes its session
// over, which works the same on every broker, transport and version),
// reconnects on its own, resumes the session and replays what was
// unacknowledged. The watcher gets every message, QoS 2 exactly once.
//
// On mochi the messages are QoS 1 only: mochi v2.7.9 loses QoS 2
// messages of a session that is taken over with flows half done (it acks
// them and never delivers them; see the journal, "mochi defects"), which
// is the broker's loss, not the client's.
func TestReconnectReplayEveryTransport(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		const n = 200
		topic := uniqueID("replay")
		watcher := b.start(t, eventloop.Options{})
		watcher.subscribe(eventloop.Filter{Topic: topic + "/#", QoS: 2})

		id := uniqueID("replay")
		opts := b.portable(eventloop.Options{ClientID: id, SessionExpiry: time.Hour, Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
		pub := b.start(t, opts)
		for i := 0; i < n; i++ {
			qos := byte(1 + i%2)
			if b.mochi != nil {
				qos = 1
			}
			pub.send(eventloop.Publish{Topic: fmt.Sprintf("%s/%d", topic, qos), QoS: qos, Payload: []byte(strconv.Itoa(i))})
		}
		// The takeover: a second connection with the same client id, which
		// leaves the session to the broker again, or loses it back to the
		// publisher reconnecting first.
		thief := b.start(t, b.portable(eventloop.Options{ClientID: id, SessionExpiry: time.Hour}))
		select {
		case thief.reqs <- eventloop.Disconnect{}:
			thief.woke()
		case <-thief.done:
		}
		if err := thief.end(); !errors.Is(err, eventloop.ErrDisconnected) && !errors.Is(err, eventloop.ErrConnectionLost) {
			t.Fatalf("the second connection ended with %v", err)
		}

		acked, reconnected := 0, false
		for acked < n || !reconnected {
			switch v := pub.next().(type) {
			case eventloop.Published:
				if v.Err != nil {
					t.Fatalf("publish %s failed: %v", v.Request.Payload, v.Err)
				}
				acked++
			case eventloop.Connected:
				if !v.SessionPresent {
					t.Fatal("reconnected without the session")
				}
				reconnected = true
			}
		}
		qos2 := map[string]bool{}
		for got := map[string]bool{}; len(got) < n; {
			m := expect[eventloop.Message](watcher)
			if m.QoS == 2 {
				if qos2[string(m.Payload)] {
					t.Fatalf("QoS 2 message %s twice", m.Payload)
				}
				qos2[string(m.Payload)] = true
			}
			got[string(m.Payload)] = true
		}
	})
}
