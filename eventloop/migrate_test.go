package eventloop_test

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mochipk "github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/udpproxy"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// quicProxy starts an embedded broker with a QUIC listener and a UDP
// fault proxy in front of it.
func quicProxy(t *testing.T) (*mqtttest.Broker, *udpproxy.Proxy) {
	t.Helper()
	b := quicBroker(t)
	return b, udpproxy.StartT(t, strings.TrimPrefix(b.QUICURL(), "quic://"))
}

// publisher sends QoS 1 publishes numbered from 0 at rate per second
// until stop is closed, then closes reqs. It returns the count sent.
func publisher(reqs chan<- eventloop.Request, topic string, rate int, stop <-chan struct{}) <-chan int {
	sent := make(chan int, 1)
	go func() {
		defer close(reqs)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				sent <- n
				return
			case <-tick.C:
			}
			payload := binary.BigEndian.AppendUint32(nil, uint32(n))
			select {
			case reqs <- eventloop.Publish{Topic: topic, QoS: 1, Payload: payload, Tag: n}:
			case <-stop:
				sent <- n
				return
			}
		}
	}()
	return sent
}

// TestQUICHandoversKeepSession: a publisher at 200 QoS 1 messages per
// second goes through 10 changes of network path, half found by the loop
// (its client address blackholed, as when a phone leaves Wi-Fi or a NAT
// rebinds) and half asked for with Handover. The MQTT session simply
// continues: one CONNECT, no reconnect, every message acknowledged once
// and received by the broker exactly once, none resent. Goroutine profiles
// taken after every path change show that the loop started no goroutine
// (quic-go's own are allowed, and end with the run).
func TestQUICHandoversKeepSession(t *testing.T) {
	const handovers, perRound = 10, 20
	b, p := quicProxy(t)
	ignore := append(leakcheck.Standard(), brokerGoroutines...)
	ignore = append(ignore, "udpproxy")
	during := append(slices.Clip(ignore), quicGoroutines, "eventloop_test.publisher")
	before := leakcheck.Snapshot()

	id, topic := uniqueID("handover"), uniqueID("handover")
	loop, err := eventloop.New(quicOptions(eventloop.Options{
		Servers:   []string{p.URL()},
		ClientID:  id,
		Reconnect: reconnect.Never, // any reconnect ends the run
		Logger:    infoLogger(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan eventloop.Request, 256)
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopPub := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopPub()
	events := loop.Run(testContext(t), reqs)
	if n, err := events.Next(); err != nil {
		t.Fatal(err)
	} else if _, ok := n.(eventloop.Connected); !ok {
		t.Fatalf("first notification %T", n)
	}
	sentCh := publisher(reqs, topic, 200, stop)
	cur := p.Clients()[0] // the client address the proxy sees now

	acked := map[int]int{}
	var changes []eventloop.PathChanged
	round := 0
	// The next path change starts once perRound more messages were
	// acknowledged since the last one.
	next, changing := perRound, false
	trigger := func() {
		if round%2 == 0 {
			p.Blackhole(cur, true) // the loop must notice
		} else {
			loop.Handover()
		}
	}
	var runErr error
	for runErr == nil {
		n, err := events.Next()
		if err != nil {
			runErr = err
			break
		}
		switch n := n.(type) {
		case eventloop.Published:
			if n.Err != nil {
				t.Fatalf("publish refused: %v", n.Err)
			}
			acked[n.Request.Tag.(int)]++
			if !changing && len(acked) >= next {
				if round < handovers {
					changing = true
					trigger()
				} else {
					stopPub()
				}
			}
		case eventloop.PathChanged:
			changes = append(changes, n)
			cur = proxiedAddr(n.NewLocal)
			if n.Trigger == eventloop.PathHandover {
				// The old path is not needed any more: cut it off.
				p.Blackhole(proxiedAddr(n.OldLocal), true)
			}
			if gs := leakcheck.Started(before, leakcheck.Snapshot(), during...); len(gs) > 0 {
				t.Fatalf("after path change %d the loop started goroutines:\n%s", len(changes), leakcheck.Report(gs))
			}
			// A round ends with its change: any after a blackhole, the
			// handover's after Handover. (A busy machine may add a change
			// of its own now and then: a silence the loop took for a dead
			// path; it is counted, and harmless.)
			if changing && (round%2 == 0 || n.Trigger == eventloop.PathHandover) {
				round++
				changing, next = false, len(acked)+perRound
			}
		case eventloop.Disconnected:
			if !errors.Is(n.Err, eventloop.ErrRequestsDone) {
				t.Fatalf("round %d: %T %+v: the session did not simply continue", round, n, n)
			}
		case eventloop.Connected, eventloop.Reconnecting:
			t.Fatalf("round %d: %T %+v: the session did not simply continue", round, n, n)
		}
	}
	if !errors.Is(runErr, eventloop.ErrRequestsDone) {
		t.Fatalf("run ended with %v", runErr)
	}
	sent := <-sentCh
	asked := 0
	for _, c := range changes {
		if c.Trigger == eventloop.PathHandover {
			asked++
		}
	}
	if len(changes) < handovers || asked != handovers/2 || loop.PathChanges() != uint64(len(changes)) {
		t.Fatalf("%d PathChanged (%d asked for), PathChanges() = %d, want %d (%d asked for)", len(changes), asked, loop.PathChanges(), handovers, handovers/2)
	}
	for i := 0; i < sent; i++ {
		if acked[i] != 1 {
			t.Fatalf("message %d acknowledged %d times (sent %d)", i, acked[i], sent)
		}
	}
	// The broker saw one CONNECT and every message exactly once, none
	// resent (DUP).
	if n := b.Count(id, mqtttest.FromClient, mochipk.Connect); n != 1 {
		t.Fatalf("%d CONNECTs", n)
	}
	got := map[uint32]int{}
	for _, c := range b.Packets() {
		if c.ClientID != id || c.Direction != mqtttest.FromClient || c.Type != mochipk.Publish {
			continue
		}
		if c.Packet.FixedHeader.Dup {
			t.Fatalf("message %x resent with DUP", c.Packet.Payload)
		}
		got[binary.BigEndian.Uint32(c.Packet.Payload)]++
	}
	if len(got) != sent {
		t.Fatalf("broker got %d distinct messages, want %d", len(got), sent)
	}
	for seq, n := range got {
		if n != 1 {
			t.Fatalf("broker got message %d %d times", seq, n)
		}
	}
	for _, c := range changes {
		t.Logf("%-12v %v -> %v in %v", c.Trigger, c.OldLocal, c.NewLocal, c.Took.Round(time.Millisecond))
	}
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, append(ignore, "eventloop_test.publisher")...); len(left) > 0 {
		t.Fatalf("left running after the run:\n%s", leakcheck.Report(left))
	}
}

// proxiedAddr is how the UDP proxy on 127.0.0.1 sees a client socket with
// local address a.
func proxiedAddr(a net.Addr) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(a.(*net.UDPAddr).Port))
}

// infoLogger logs the loop's Info records to stderr when
// MQTTLOOP_TEST_DEBUG is set (nil otherwise).
func infoLogger() *slog.Logger {
	if os.Getenv("MQTTLOOP_TEST_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestQUICPathChangeFallsBack: when no new path can be validated (the
// broker unreachable from every address) within QUICMigrationTimeout,
// the loop falls back to a new connection, which replays the session
// once the network is back.
func TestQUICPathChangeFallsBack(t *testing.T) {
	_, p := quicProxy(t)
	c := startClient(t, p.URL(), quicOptions(eventloop.Options{
		QUICMigrationTimeout: 300 * time.Millisecond,
		Reconnect:            reconnect.Automatic,
		SessionExpiry:        time.Minute,
		BackOff:              quickBackOff(),
	}))
	p.BlackholeAll(true)
	c.send(eventloop.Publish{Topic: uniqueID("fallback"), QoS: 1, Payload: []byte("x"), Tag: "x"})
	d := expect[eventloop.Disconnected](c)
	mustIs(t, d.Err, eventloop.ErrPathChangeFailed)
	p.BlackholeAll(false)
	if conn := c.expectConnected(); !conn.SessionPresent || conn.Replayed != 1 {
		t.Fatalf("reconnected with %+v, want the session and one message replayed", conn)
	}
	if pub := expect[eventloop.Published](c); pub.Request.Tag != "x" || pub.Err != nil {
		t.Fatalf("published %+v", pub)
	}
}

// TestHandoverOverTCPReconnects: a connection that cannot migrate is
// replaced when the application says the network changed.
func TestHandoverOverTCPReconnects(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	c := startClient(t, b.URL(), eventloop.Options{Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	c.loop.Handover()
	d := expect[eventloop.Disconnected](c)
	mustIs(t, d.Err, eventloop.ErrHandover)
	c.expectConnected()
	if n := c.loop.PathChanges(); n != 0 {
		t.Fatalf("PathChanges() = %d over TCP", n)
	}
}
