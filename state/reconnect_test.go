package state

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// reconnectFixture is a session with five publishes in flight (QoS 1, 2, 1,
// 2, 2; the 2nd and 5th awaiting PUBCOMP), a SUBSCRIBE in flight sent
// between the 3rd and 4th, two requests queued and never sent, and an
// incoming QoS 2 message (id 7) awaiting PUBREL. The packet ids wrap
// during the sends, so id order differs from send order.
type reconnectFixture struct {
	s          *MqttState
	pubs       [5]*packets.Publish
	ids        [5]uint16
	inFlightSb *packets.Subscribe
	later      *packets.Publish
	laterSb    *packets.Subscribe
}

func newReconnectFixture(t *testing.T) *reconnectFixture {
	t.Helper()
	f := &reconnectFixture{s: New(Config{})}
	s := f.s
	s.nextID = 65532
	for i, q := range []byte{1, 2, 1, 2, 2} {
		f.pubs[i] = pub(fmt.Sprintf("t/%d", i), q)
	}
	f.inFlightSb = sub("s/#")
	s.Enqueue(Pending{Packet: f.pubs[0], Tag: 0})
	s.Enqueue(Pending{Packet: f.pubs[1], Tag: 1})
	s.Enqueue(Pending{Packet: f.pubs[2], Tag: 2})
	s.Enqueue(Pending{Packet: f.inFlightSb, Tag: "sub"})
	s.Enqueue(Pending{Packet: f.pubs[3], Tag: 3})
	s.Enqueue(Pending{Packet: f.pubs[4], Tag: 4})
	for range 6 {
		sendID(t, s)
	}
	for i, p := range f.pubs {
		f.ids[i] = p.PacketID
	}
	if f.ids != [5]uint16{65533, 65534, 65535, 2, 3} || f.inFlightSb.PacketID != 1 {
		t.Fatalf("setup: ids %v and %d, want [65533 65534 65535 2 3] and 1", f.ids, f.inFlightSb.PacketID)
	}
	for _, i := range []int{1, 4} {
		_, reply := handle(t, s, &packets.Pubrec{PacketID: f.ids[i]})
		wantReply(t, reply, &packets.Pubrel{PacketID: f.ids[i]})
	}
	f.later = pub("later", 0)
	f.laterSb = sub("later")
	s.Enqueue(Pending{Packet: f.later, Tag: "later"})
	s.Enqueue(Pending{Packet: f.laterSb, Tag: "laterSub"})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 7})
	checkInvariants(t, s)
	return f
}

func (f *reconnectFixture) checkReplay(t *testing.T, r Resumed) {
	t.Helper()
	want := []packets.Packet{
		f.pubs[0],
		&packets.Pubrel{PacketID: f.ids[1]},
		f.pubs[2],
		f.pubs[3],
		&packets.Pubrel{PacketID: f.ids[4]},
	}
	if len(r.Replay) != len(want) {
		t.Fatalf("Replay has %d packets, want %d: %v", len(r.Replay), len(want), r.Replay)
	}
	for i, w := range want {
		switch w := w.(type) {
		case *packets.Publish:
			if r.Replay[i] != w {
				t.Fatalf("Replay[%d] = %v, want publish %s", i, r.Replay[i], w.Topic)
			}
			if !w.Duplicate {
				t.Fatalf("replayed publish %s without DUP", w.Topic)
			}
		default:
			if !reflect.DeepEqual(r.Replay[i], w) {
				t.Fatalf("Replay[%d] = %#v, want %#v", i, r.Replay[i], w)
			}
		}
	}
	for i, p := range f.pubs {
		if p.PacketID != f.ids[i] {
			t.Fatalf("publish %d replayed with id %d, want its original %d", i, p.PacketID, f.ids[i])
		}
	}
}

func TestReconnectSessionPresent(t *testing.T) {
	f := newReconnectFixture(t)
	s := f.s
	before := s.Queued() + s.Outstanding()
	r := s.Connected(connack(true, nil), false)
	f.checkReplay(t, r)
	if r.Requeued != 1 || len(r.Completed) != 0 {
		t.Fatalf("Requeued %d, Completed %v; want 1 and none", r.Requeued, r.Completed)
	}
	// The SUBSCRIBE goes back at the head, ahead of what was never sent.
	q := s.QueuedRequests()
	if len(q) != 3 || q[0].Packet != f.inFlightSb || q[0].Tag != "sub" || q[1].Packet != f.later || q[2].Packet != f.laterSb {
		t.Fatalf("QueuedRequests() = %v, want [sub later laterSub]", q)
	}
	if s.InFlight() != 5 || s.Outstanding() != 5 {
		t.Fatalf("InFlight %d, Outstanding %d; want 5 and 5", s.InFlight(), s.Outstanding())
	}
	if after := s.Queued() + s.Outstanding(); after != before {
		t.Fatalf("requests before reconnect %d, after %d", before, after)
	}
	for i, o := range s.InFlightPublishes() {
		wantStage := AwaitingAck
		if i == 1 || i == 4 {
			wantStage = AwaitingComplete
		}
		if o.Publish != f.pubs[i] || o.Stage != wantStage {
			t.Fatalf("InFlightPublishes()[%d] = %+v, want publish %d at stage %d", i, o, i, wantStage)
		}
	}
	// The incoming QoS 2 message is remembered: its duplicate is not
	// delivered again.
	ev, reply := handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 7, Duplicate: true})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubrec{PacketID: 7})
	checkInvariants(t, s)

	// Reconnecting again replays the same.
	f.checkReplay(t, s.Connected(connack(true, nil), false))

	// The requeued SUBSCRIBE gets a fresh id; the old one is unknown.
	oldSubID := f.inFlightSb.PacketID
	if p, _ := send(t, s); p.Tag != "sub" {
		t.Fatalf("sent %v, want the requeued subscribe", p.Tag)
	}
	for _, id := range f.ids {
		if f.inFlightSb.PacketID == id {
			t.Fatalf("requeued subscribe got id %d, still used by a publish", id)
		}
	}
	if oldSubID != f.inFlightSb.PacketID {
		handleViolation(t, s, &packets.Suback{PacketID: oldSubID, Reasons: []byte{0}})
	}
	checkInvariants(t, s)

	// The flows carry on where they were.
	ev, _ = handle(t, s, &packets.Puback{PacketID: f.ids[0]})
	wantDone(t, ev, f.pubs[0], 0, 0)
	ev, _ = handle(t, s, &packets.Pubcomp{PacketID: f.ids[1]})
	wantDone(t, ev, f.pubs[1], 1, 0)
	handleViolation(t, s, &packets.Pubcomp{PacketID: f.ids[3]})
	_, reply = handle(t, s, &packets.Pubrec{PacketID: f.ids[3]})
	wantReply(t, reply, &packets.Pubrel{PacketID: f.ids[3]})
	checkInvariants(t, s)
}

func TestReconnectSessionAbsent(t *testing.T) {
	f := newReconnectFixture(t)
	s := f.s
	// A first reconnect with the session sets DUP on the unacknowledged
	// publishes and requeues the SUBSCRIBE, which goes out again.
	s.Connected(connack(true, nil), false)
	if p, _ := send(t, s); p.Packet != f.inFlightSb {
		t.Fatalf("sent %v, want the requeued subscribe", p.Tag)
	}

	before := s.Queued() + s.Outstanding()
	r := s.Connected(connack(false, nil), false)
	if len(r.Replay) != 0 {
		t.Fatalf("Replay = %v, want nothing without a session", r.Replay)
	}
	// QoS 2 publishes the broker had PUBREC'd are done.
	if len(r.Completed) != 2 {
		t.Fatalf("Completed = %+v, want publishes 1 and 4", r.Completed)
	}
	for i, k := range []int{1, 4} {
		if c := r.Completed[i]; c.Publish != f.pubs[k] || c.Tag != k || c.ReasonCode != 0 {
			t.Fatalf("Completed[%d] = %+v, want publish %d", i, c, k)
		}
	}
	if s.InFlight() != 0 || s.Outstanding() != 0 || len(s.inUse) != 0 {
		t.Fatalf("InFlight %d, Outstanding %d, ids %d; want nothing in flight", s.InFlight(), s.Outstanding(), len(s.inUse))
	}
	if r.Requeued != 4 {
		t.Fatalf("Requeued = %d, want 4 (3 publishes and the subscribe)", r.Requeued)
	}
	if after := s.Queued() + s.Outstanding() + len(r.Completed); after != before {
		t.Fatalf("requests before reconnect %d, after %d: something was lost or doubled", before, after)
	}

	// The unacknowledged publishes are at the head, in their order, as new
	// publishes, ahead of the requests never sent.
	q := s.QueuedRequests()
	if len(q) != 6 {
		t.Fatalf("QueuedRequests() has %d, want 6: %v", len(q), q)
	}
	var pubOrder []any
	for _, p := range q[:4] {
		if pp, ok := p.Packet.(*packets.Publish); ok {
			pubOrder = append(pubOrder, p.Tag)
			if pp.Duplicate || pp.PacketID != 0 {
				t.Fatalf("requeued publish %v has DUP %v, id %d; want a new publish", p.Tag, pp.Duplicate, pp.PacketID)
			}
		} else if p.Packet != f.inFlightSb {
			t.Fatalf("unexpected request %v among the requeued ones", p.Tag)
		}
	}
	if !reflect.DeepEqual(pubOrder, []any{0, 2, 3}) {
		t.Fatalf("requeued publishes in order %v, want [0 2 3]", pubOrder)
	}
	if q[4].Packet != f.later || q[5].Packet != f.laterSb {
		t.Fatalf("requests never sent are not after the requeued ones: %v", q)
	}
	checkInvariants(t, s)

	// Sent again, they get new ids.
	used := map[uint16]bool{}
	for range 6 {
		_, pkt := send(t, s)
		if p, ok := pkt.(*packets.Publish); ok && p.QoS == 0 {
			continue
		}
		id := packetID(t, pkt)
		if id == 0 || used[id] {
			t.Fatalf("id %d reused or 0", id)
		}
		used[id] = true
	}
	checkInvariants(t, s)

	// The incoming QoS 2 id is forgotten: the broker's new message with it
	// is delivered.
	p := &packets.Publish{Topic: "in", QoS: 2, PacketID: 7}
	ev, reply := handle(t, s, p)
	wantDelivered(t, ev, p)
	wantReply(t, reply, &packets.Pubrec{PacketID: 7})
}

// Requests put back at the head keep the order they were sent in, across
// kinds and a packet id wraparound: a SUBSCRIBE then UNSUBSCRIBE of the same
// filter must not be swapped, nor a SUBSCRIBE and a publish sent after it.
func TestReconnectRequeueKeepsSendOrder(t *testing.T) {
	for _, present := range []bool{true, false} {
		t.Run(fmt.Sprintf("session present %v", present), func(t *testing.T) {
			s := New(Config{})
			s.nextID = 65533
			s.Enqueue(Pending{Packet: sub("x"), Tag: "sub x"})       // id 65534
			s.Enqueue(Pending{Packet: pub("x", 1), Tag: "pub x"})    // id 65535
			s.Enqueue(Pending{Packet: unsub("x"), Tag: "unsub x"})   // id 1
			s.Enqueue(Pending{Packet: sub("y"), Tag: "sub y"})       // id 2
			s.Enqueue(Pending{Packet: pub("y", 2), Tag: "pub y"})    // id 3
			s.Enqueue(Pending{Packet: unsub("y"), Tag: "unsub y"})   // id 4
			s.Enqueue(Pending{Packet: pub("z", 0), Tag: "not sent"}) // stays queued
			for range 6 {
				sendID(t, s)
			}
			r := s.Connected(connack(present, nil), false)
			want := []any{"sub x", "pub x", "unsub x", "sub y", "pub y", "unsub y", "not sent"}
			if present {
				// The publishes are replayed; the others are requeued.
				want = []any{"sub x", "unsub x", "sub y", "unsub y", "not sent"}
				if len(r.Replay) != 2 {
					t.Fatalf("Replay = %v, want the 2 publishes", r.Replay)
				}
			}
			var got []any
			for _, p := range s.QueuedRequests() {
				got = append(got, p.Tag)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("queue after reconnect = %v, want %v", got, want)
			}
			if r.Requeued != len(want)-1 {
				t.Fatalf("Requeued = %d, want %d", r.Requeued, len(want)-1)
			}
			checkInvariants(t, s)
		})
	}
}

// Without a session, pending manual acks and incoming QoS 2 ids are
// forgotten; with one they are kept.
func TestReconnectIncomingState(t *testing.T) {
	setup := func() *MqttState {
		s := New(Config{ManualAcks: true})
		handle(t, s, &packets.Publish{Topic: "a", QoS: 1, PacketID: 3})
		handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 4})
		handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 5})
		if _, err := s.Ack(5, 2, 0, 0); err != nil {
			t.Fatalf("Ack(5) = %v", err)
		}
		return s
	}

	s := setup()
	s.Connected(connack(true, nil), false)
	if s.AwaitingRelease() != 2 {
		t.Fatalf("session present: AwaitingRelease() = %d, want 2", s.AwaitingRelease())
	}
	ev, reply := handle(t, s, &packets.Publish{Topic: "a", QoS: 2, PacketID: 5, Duplicate: true})
	wantNoEvent(t, ev)
	wantReply(t, reply, &packets.Pubrec{PacketID: 5})
	if _, err := s.Ack(3, 1, 0, 0); err != nil {
		t.Fatalf("session present: Ack(3, 1) = %v", err)
	}
	if _, err := s.Ack(4, 2, 0, 0); err != nil {
		t.Fatalf("session present: Ack(4, 2) = %v", err)
	}

	s = setup()
	s.Connected(connack(false, nil), false)
	if s.AwaitingRelease() != 0 {
		t.Fatalf("session absent: AwaitingRelease() = %d, want 0", s.AwaitingRelease())
	}
	if _, err := s.Ack(3, 1, 0, 0); err == nil {
		t.Fatalf("session absent: Ack(3, 1) accepted for a forgotten message")
	}
	if _, err := s.Ack(4, 2, 0, 0); err == nil {
		t.Fatalf("session absent: Ack(4, 2) accepted for a forgotten message")
	}
	for _, id := range []uint16{4, 5} {
		p := &packets.Publish{Topic: "a", QoS: 2, PacketID: id}
		ev, _ := handle(t, s, p)
		wantDelivered(t, ev, p)
	}
}

// Subscriptions survive reconnects (the event loop decides what to do with
// them).
func TestReconnectKeepsSubscriptions(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: sub("a")})
	id := sendID(t, s)
	handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{1}})
	for _, present := range []bool{true, false} {
		s.Connected(connack(present, nil), false)
		if _, ok := s.Subscriptions()["a"]; !ok {
			t.Fatalf("subscription lost on reconnect (session present %v)", present)
		}
	}
}

// Delivered carries the broker session a message came from; an ack for a
// message of a session lost since is refused with ErrStaleAck and
// acknowledges nothing, not even a newer message reusing the packet id.
func TestStaleAck(t *testing.T) {
	s := New(Config{ManualAcks: true})
	deliver := func(p *packets.Publish) uint64 {
		t.Helper()
		ev, _ := handle(t, s, p)
		wantDelivered(t, ev, p)
		return ev.(Delivered).Session
	}
	// The first CONNACK starts a session, even with session present
	// (the loop cannot know what an earlier process delivered).
	s.Connected(connack(true, nil), false)
	first := deliver(&packets.Publish{Topic: "a", QoS: 1, PacketID: 3})
	if first == 0 {
		t.Fatalf("Delivered.Session = 0 after a CONNACK")
	}
	old2 := deliver(&packets.Publish{Topic: "a", QoS: 2, PacketID: 4})
	// Session kept: the same session, acks still valid.
	s.Connected(connack(true, nil), false)
	if again := deliver(&packets.Publish{Topic: "a", QoS: 1, PacketID: 5}); again != first {
		t.Fatalf("session present: Session %d, want %d", again, first)
	}
	if _, err := s.Ack(3, 1, 0, first); err != nil {
		t.Fatalf("Ack in the same session: %v", err)
	}
	// Session lost: a newer message reuses id 4.
	s.Connected(connack(false, nil), false)
	newer := deliver(&packets.Publish{Topic: "b", QoS: 2, PacketID: 4})
	if newer == first {
		t.Fatalf("session absent: Session still %d", newer)
	}
	for _, tc := range []struct {
		id  uint16
		qos byte
	}{{4, 2}, {5, 1}} {
		if reply, err := s.Ack(tc.id, tc.qos, 0, old2); !errors.Is(err, ErrStaleAck) || reply != nil {
			t.Fatalf("Ack(%d) of a lost session = %v, %v; want ErrStaleAck", tc.id, reply, err)
		}
	}
	if s.AwaitingRelease() != 1 {
		t.Fatalf("a stale ack changed the session: AwaitingRelease %d", s.AwaitingRelease())
	}
	reply, err := s.Ack(4, 2, 0, newer)
	if err != nil {
		t.Fatalf("Ack of the newer message: %v", err)
	}
	wantReply(t, reply, &packets.Pubrec{PacketID: 4})
	// Session 0 skips the check.
	deliver(&packets.Publish{Topic: "c", QoS: 1, PacketID: 6})
	if _, err := s.Ack(6, 1, 0, 0); err != nil {
		t.Fatalf("unchecked Ack: %v", err)
	}
}
