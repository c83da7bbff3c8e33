package eventloop_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	mochipk "github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// streamLog records, from the loop's debug records, which stream each
// packet travelled on.
type streamLog struct {
	mu   sync.Mutex
	recs []streamRec
}

type streamRec struct {
	dir, typ, topic string
	stream          int64
}

func (s *streamLog) Enabled(context.Context, slog.Level) bool { return true }
func (s *streamLog) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *streamLog) WithGroup(string) slog.Handler            { return s }
func (s *streamLog) Handle(_ context.Context, r slog.Record) error {
	var rec streamRec
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "dir":
			rec.dir = a.Value.String()
		case "type":
			rec.typ = a.Value.String()
		case "topic":
			rec.topic = a.Value.String()
		case "filters":
			rec.topic = fmt.Sprint(a.Value.Any())
		case "stream":
			rec.stream = a.Value.Int64()
		}
		return true
	})
	if rec.typ != "" {
		s.mu.Lock()
		s.recs = append(s.recs, rec)
		s.mu.Unlock()
	}
	return nil
}

func (s *streamLog) records() []streamRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]streamRec(nil), s.recs...)
}

// byTopic maps topics under a/ to data stream 1, under b/ to data stream
// 2, and the rest to the control stream.
func byTopic(r eventloop.Request) int {
	var topic string
	switch r := r.(type) {
	case eventloop.Publish:
		topic = r.Topic
	case eventloop.Subscribe:
		topic = r.Filters[0].Topic
	case eventloop.Unsubscribe:
		topic = r.Topics[0]
	}
	switch {
	case strings.Contains(topic, "/a/"):
		return 1
	case strings.Contains(topic, "/b/"):
		return 2
	}
	return 0
}

// TestQUICDataStreams: with Options.QUICStreams, subscriptions and
// publishes at every QoS travel on the data stream their topic maps to,
// the broker answers each on the stream it came on and delivers messages
// on the stream of the matching subscription, and CONNECT and PINGREQ keep
// to the control stream (EMQX's multi-stream mode, which the embedded
// broker speaks).
func TestQUICDataStreams(t *testing.T) {
	b := quicBroker(t)
	log := &streamLog{}
	id := uniqueID("streams")
	c := startClient(t, b.QUICURL(), quicOptions(eventloop.Options{
		ClientID:    id,
		QUICStreams: byTopic,
		Logger:      slog.New(log),
	}))
	base := uniqueID("streams")
	topics := map[int]string{0: base + "/c/x", 1: base + "/a/x", 2: base + "/b/x"}
	for i := 0; i < 3; i++ {
		c.subscribe(eventloop.Filter{Topic: strings.TrimSuffix(topics[i], "x") + "#", QoS: 2})
	}
	for i := 0; i < 3; i++ {
		for q := byte(0); q <= 2; q++ {
			c.send(eventloop.Publish{Topic: topics[i], QoS: q, Payload: []byte{byte(i), q}})
		}
	}
	msgs, acks := 0, 0
	for msgs < 9 || acks < 6 {
		switch n := c.next().(type) {
		case eventloop.Message:
			msgs++
		case eventloop.Published:
			if n.Err != nil {
				t.Fatal(n.Err)
			}
			acks++
		case eventloop.RequestFailed:
			t.Fatal(n.Err)
		}
	}
	// The QoS 2 deliveries end after their Message: wait for the three
	// PUBCOMPs at the broker.
	var after uint64
	for i := 0; i < 3; i++ {
		rec, err := b.WaitMatch(testContext(t), after, func(c mqtttest.Captured) bool {
			return c.ClientID == id && c.Direction == mqtttest.FromClient && c.Type == mochipk.Pubcomp
		})
		if err != nil {
			t.Fatal(err)
		}
		after = rec.Seq
	}
	c.send(eventloop.Disconnect{})
	mustIs(t, c.end(), eventloop.ErrDisconnected)

	stream := func(topic string) int64 {
		for i, tp := range topics {
			if strings.Contains(topic, strings.TrimSuffix(tp, "x")) {
				return int64(i)
			}
		}
		return -1
	}
	// Every packet of a flow is on the stream of its topic: match each
	// ack to its PUBLISH by the order of the log (one stream's flows
	// complete in order).
	seen := map[string]int{}
	for _, r := range log.records() {
		seen[r.dir+" "+r.typ]++
		switch r.typ {
		case "CONNECT", "PINGREQ", "DISCONNECT", "CONNACK", "PINGRESP":
			if r.stream != 0 {
				t.Errorf("%s %s on stream %d", r.dir, r.typ, r.stream)
			}
		case "PUBLISH", "SUBSCRIBE":
			if want := stream(r.topic); r.stream != want {
				t.Errorf("%s %s %s on stream %d, want %d", r.dir, r.typ, r.topic, r.stream, want)
			}
		}
	}
	// Acks per stream: each data stream carried its own acks.
	perStream := map[int64]map[string]int{}
	for _, r := range log.records() {
		if perStream[r.stream] == nil {
			perStream[r.stream] = map[string]int{}
		}
		perStream[r.stream][r.dir+" "+r.typ]++
	}
	for i := int64(0); i < 3; i++ {
		got := perStream[i]
		// Per stream: 1 SUBSCRIBE/SUBACK, 3 publishes out (QoS 0-2) with
		// a PUBACK, a PUBREC and a PUBCOMP in, PUBREL out; 3 messages in
		// with a PUBACK, a PUBREC and PUBCOMP out and PUBREL in.
		want := map[string]int{
			"out SUBSCRIBE": 1, "in SUBACK": 1,
			"out PUBLISH": 3, "in PUBACK": 1, "in PUBREC": 1, "out PUBREL": 1, "in PUBCOMP": 1,
			"in PUBLISH": 3, "out PUBACK": 1, "out PUBREC": 1, "in PUBREL": 1, "out PUBCOMP": 1,
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("stream %d: %d %s, want %d (all: %v)", i, got[k], k, n, got)
			}
		}
	}
}

// TestQUICDataStreamsReplayInOrder: a publisher whose messages go on two
// data streams loses its connection with messages in flight on both; the
// session's replay after the reconnect keeps each stream's order, so a
// subscriber receives each stream's messages in the order they were
// published (duplicates of QoS 1 allowed, none missing).
func TestQUICDataStreamsReplayInOrder(t *testing.T) {
	const perStream = 150
	b := quicBroker(t)
	base := uniqueID("replay")
	sub := startClient(t, b.QUICURL(), quicOptions(eventloop.Options{}))
	sub.subscribe(eventloop.Filter{Topic: base + "/#", QoS: 1})

	id := uniqueID("replaypub")
	pub := startClient(t, b.QUICURL(), quicOptions(eventloop.Options{
		ClientID:      id,
		QUICStreams:   byTopic,
		Reconnect:     reconnect.Automatic,
		BackOff:       quickBackOff(),
		SessionExpiry: 60e9,
	}))
	for n := 0; n < perStream; n++ {
		for _, s := range []string{"/a/x", "/b/x"} {
			pub.send(eventloop.Publish{Topic: base + s, QoS: 1, Payload: binary.BigEndian.AppendUint32(nil, uint32(n))})
		}
	}
	// Cut the connection once some, not all, were acknowledged.
	for acked := 0; acked < perStream/2; {
		if _, ok := pub.next().(eventloop.Published); ok {
			acked++
		}
	}
	if err := b.DisconnectClient(id, 0x98); err != nil {
		t.Fatal(err)
	}
	if conn := pub.expectConnected(); !conn.SessionPresent || conn.Replayed == 0 {
		t.Fatalf("reconnected with %+v, want the session and a replay", conn)
	}

	next := map[string]uint32{base + "/a/x": 0, base + "/b/x": 0}
	for next[base+"/a/x"] < perStream || next[base+"/b/x"] < perStream {
		m := expect[eventloop.Message](sub)
		n := binary.BigEndian.Uint32(m.Payload)
		want, ok := next[m.Topic]
		switch {
		case !ok:
			t.Fatalf("message on %s", m.Topic)
		case n == want:
			next[m.Topic]++
		case n < want:
			// A QoS 1 duplicate of the replay: allowed.
		default:
			t.Fatalf("%s: message %d before %d: out of order", m.Topic, n, want)
		}
	}
}

// TestQUICDataStreamsPerStreamIDs: EMQX numbers each data stream's
// deliveries on its own, so two streams deliver different messages under
// the same packet id at the same time (the embedded broker does the same
// with QUICPerStreamIDs). Every QoS 1 and 2 message arrives exactly once,
// with automatic and with manual acks, and every flow completes at the
// broker.
func TestQUICDataStreamsPerStreamIDs(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		for _, manual := range []bool{false, true} {
			t.Run(fmt.Sprintf("qos=%d/manual=%v", qos, manual), func(t *testing.T) {
				const each = 30
				b := mqtttest.StartT(t, mqtttest.Options{QUIC: true, QUICPerStreamIDs: true})
				base := uniqueID("ids")
				id := uniqueID("ids")
				c := startClient(t, b.QUICURL(), quicOptions(eventloop.Options{ClientID: id, QUICStreams: byTopic, ManualAcks: manual}))
				for _, s := range []string{"/a/#", "/b/#"} {
					c.subscribe(eventloop.Filter{Topic: base + s, QoS: 2})
				}
				pub := startClient(t, b.QUICURL(), quicOptions(eventloop.Options{}))
				for n := 0; n < each; n++ {
					for _, s := range []string{"/a/x", "/b/x"} {
						pub.send(eventloop.Publish{Topic: base + s, QoS: qos, Payload: []byte(fmt.Sprintf("%s-%d", s, n))})
					}
				}
				got := map[string]int{}
				for len(got) < 2*each {
					m := expect[eventloop.Message](c)
					got[string(m.Payload)]++
					if got[string(m.Payload)] > 1 {
						t.Fatalf("%s delivered twice", m.Payload)
					}
					if manual {
						c.send(m.Ack())
					}
				}
				// Every delivery's flow completes at the broker, under
				// mochi's ids.
				typ := byte(mochipk.Puback)
				if qos == 2 {
					typ = mochipk.Pubcomp
				}
				var after uint64
				for i := 0; i < 2*each; i++ {
					rec, err := b.WaitMatch(testContext(t), after, func(cp mqtttest.Captured) bool {
						return cp.ClientID == id && cp.Direction == mqtttest.FromClient && cp.Type == typ
					})
					if err != nil {
						t.Fatalf("%d of %d acks: %v", i, 2*each, err)
					}
					after = rec.Seq
				}
			})
		}
	}
}
