package eventloop_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

func startMochi(t *testing.T, maxPacket uint32) *mqtttest.Broker {
	t.Helper()
	return mqtttest.StartT(t, mqtttest.Options{MaximumPacketSize: maxPacket})
}

// TestKeepAliveOnTheWire: with a 1 s keepalive, an idle client sends
// PINGREQ and gets PINGRESP, seen by the broker (mochi) and in the
// client's packet log (both brokers).
func TestKeepAliveOnTheWire(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b brokerCase) {
		rec := newPacketLog()
		id := uniqueID("ka")
		// KeepAlive 2 s: mochi allows 1.5 times the keepalive in whole
		// seconds, so at 1 s it gives no margin at all over the 0.75 s ping.
		c := b.start(t, eventloop.Options{ClientID: id, KeepAlive: 2 * time.Second, Logger: slog.New(rec)})
		ctx := testContext(t)
		if b.mochi != nil {
			if _, err := b.mochi.WaitPacket(ctx, id, mqtttest.FromClient, packets.PINGREQ); err != nil {
				t.Fatalf("broker saw no PINGREQ: %v\nclient log:\n%s", err, strings.Join(rec.text(), "\n"))
			}
			if _, err := b.mochi.WaitPacket(ctx, id, mqtttest.ToClient, packets.PINGRESP); err != nil {
				t.Fatalf("broker sent no PINGRESP: %v", err)
			}
		}
		if err := rec.wait(ctx, "out", "PINGREQ"); err != nil {
			t.Fatal(err)
		}
		if err := rec.wait(ctx, "in", "PINGRESP"); err != nil {
			t.Fatal(err)
		}
		// Still connected and working after several keepalive periods.
		c.send(eventloop.Publish{Topic: "ka/x", QoS: 1})
		expect[eventloop.Published](c)
	})
}

// TestBrokerDisconnect: a DISCONNECT from the broker ends the connection
// with its reason code.
func TestBrokerDisconnect(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("kicked")
	c := startClient(t, b.URL(), eventloop.Options{ClientID: id})
	if err := b.DisconnectClient(id, 0x98); err != nil {
		t.Fatal(err)
	}
	d := expect[eventloop.Disconnected](c)
	var rerr *eventloop.ReasonCodeError
	if !errors.As(d.Err, &rerr) || rerr.Code != 0x98 || rerr.Packet != "DISCONNECT" {
		t.Fatalf("Disconnected.Err = %v, want DISCONNECT 0x98", d.Err)
	}
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, eventloop.ErrBrokerDisconnect)
}

// packetLog is a slog handler recording the loop's packet records.
type packetLog struct {
	mu      sync.Mutex
	changed chan struct{}
	seen    map[[2]string]int
	secrets []string
	all     []string
}

func newPacketLog() *packetLog {
	return &packetLog{changed: make(chan struct{}, 1), seen: map[[2]string]int{}}
}

func (p *packetLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *packetLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *packetLog) WithGroup(string) slog.Handler            { return p }
func (p *packetLog) Handle(_ context.Context, r slog.Record) error {
	var dir, typ string
	var text string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "dir":
			dir = a.Value.String()
		case "type":
			typ = a.Value.String()
		}
		text += a.Key + "=" + a.Value.String() + " "
		return true
	})
	p.mu.Lock()
	p.seen[[2]string{dir, typ}]++
	if len(p.all) < 10000 {
		p.all = append(p.all, text)
	}
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return nil
}

func (p *packetLog) count(dir, typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[[2]string{dir, typ}]
}

func (p *packetLog) text() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.all...)
}

// wait blocks until a record of dir/typ was logged.
func (p *packetLog) wait(ctx context.Context, dir, typ string) error {
	for p.count(dir, typ) == 0 {
		select {
		case <-p.changed:
		case <-ctx.Done():
			return errors.New("no " + dir + " " + typ + " logged")
		}
	}
	return nil
}
