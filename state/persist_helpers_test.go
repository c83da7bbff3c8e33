package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// fullProps returns publish properties with every field this package
// saves set.
func fullProps(i int) *packets.Properties {
	return &packets.Properties{
		PayloadFormat:   ptr(byte(1)),
		MessageExpiry:   ptr(uint32(3600 + i)),
		ContentType:     "text/plain",
		ResponseTopic:   fmt.Sprintf("reply/%d", i),
		CorrelationData: []byte{0, byte(i), 0xff},
		User:            []packets.User{{Key: "k", Value: fmt.Sprint(i)}, {Key: "k", Value: "dup key"}},
	}
}

// richFixture is a session holding every kind of entry, built after the
// packet ids wrapped around:
//   - subscriptions a/+ (QoS 1, NoLocal), b/# (QoS 2, RetainAsPublished,
//     RetainHandling 2, subscription id 7), c (QoS 0, subscription id 7);
//   - in flight: QoS 1 "p0" (with every property), QoS 2 "p1" awaiting
//     PUBREC, QoS 2 "p2" awaiting PUBCOMP (PUBREC received), QoS 1 "p3"
//     retained with a nil payload; a SUBSCRIBE "s/#" (subscription id 9),
//     an UNSUBSCRIBE "a/+";
//   - queued, in order: QoS 0 "q0" with an empty payload, SUBSCRIBE
//     "qs/1" "qs/2", UNSUBSCRIBE "c", QoS 2 "q2" with properties;
//   - incoming: QoS 2 id 20 PUBREC sent, QoS 2 id 21 awaiting a manual
//     ack, QoS 1 id 22 awaiting a manual ack.
type richFixture struct {
	s        *MqttState
	inflight []*packets.Publish // p0..p3
	sub      *packets.Subscribe
	unsub    *packets.Unsubscribe
}

func richSession(t testing.TB) *richFixture {
	t.Helper()
	sendID := func(t testing.TB, s *MqttState) uint16 {
		t.Helper()
		n := s.NextToSend()
		pkt := n.Packet
		if pkt == nil || n.Err != nil {
			t.Fatalf("NextToSend() = %+v", n)
		}
		switch p := pkt.(type) {
		case *packets.Publish:
			return p.PacketID
		case *packets.Subscribe:
			return p.PacketID
		case *packets.Unsubscribe:
			return p.PacketID
		}
		return 0
	}
	handle := func(t testing.TB, s *MqttState, p packets.Packet) (any, packets.Packet) {
		t.Helper()
		ev, reply, err := s.HandleIncoming(in(p))
		if err != nil {
			t.Fatalf("HandleIncoming(%T): %v", p, err)
		}
		return ev, reply
	}
	f := &richFixture{s: New(Config{ManualAcks: true})}
	s := f.s
	s.SetIdentity(Identity{Server: "mqtts://broker.example:8883", ClientID: "client-ü"})

	// Subscriptions, made through SUBACKs.
	sb1 := &packets.Subscribe{Properties: &packets.Properties{}, Subscriptions: []packets.SubOptions{
		{Topic: "a/+", QoS: 1, NoLocal: true},
	}}
	sb2 := &packets.Subscribe{Properties: &packets.Properties{SubscriptionIdentifier: ptr(7)}, Subscriptions: []packets.SubOptions{
		{Topic: "b/#", QoS: 2, RetainAsPublished: true, RetainHandling: 2},
		{Topic: "c", QoS: 0},
	}}
	s.Enqueue(Pending{Packet: sb1, Tag: "sb1"})
	s.Enqueue(Pending{Packet: sb2, Tag: "sb2"})
	handle(t, s, &packets.Suback{PacketID: sendID(t, s), Reasons: []byte{1}})
	handle(t, s, &packets.Suback{PacketID: sendID(t, s), Reasons: []byte{2, 0}})

	// Ids wrap during the sends below.
	s.nextID = 65533
	p0 := pub("p0", 1)
	p0.Properties = fullProps(0)
	p1 := pub("p1", 2)
	p2 := pub("p2", 2)
	p3 := &packets.Publish{Topic: "p3", QoS: 1, Retain: true}
	f.inflight = []*packets.Publish{p0, p1, p2, p3}
	f.sub = &packets.Subscribe{Properties: &packets.Properties{SubscriptionIdentifier: ptr(9), User: []packets.User{{Key: "u", Value: "v"}}},
		Subscriptions: []packets.SubOptions{{Topic: "s/#", QoS: 1}}}
	f.unsub = &packets.Unsubscribe{Properties: &packets.Properties{}, Topics: []string{"a/+"}}
	s.Enqueue(Pending{Packet: p0, Tag: "p0"})
	s.Enqueue(Pending{Packet: p1, Tag: "p1"})
	s.Enqueue(Pending{Packet: f.sub, Tag: "sub"})
	s.Enqueue(Pending{Packet: p2, Tag: "p2"})
	s.Enqueue(Pending{Packet: f.unsub, Tag: "unsub"})
	s.Enqueue(Pending{Packet: p3, Tag: "p3"})
	for range 6 {
		sendID(t, s)
	}
	if p0.PacketID != 65534 || p1.PacketID != 65535 || f.sub.PacketID != 1 || p3.PacketID != 4 {
		t.Fatalf("setup: ids %d %d %d %d, want a wraparound", p0.PacketID, p1.PacketID, f.sub.PacketID, p3.PacketID)
	}
	if _, reply := handle(t, s, &packets.Pubrec{PacketID: p2.PacketID}); !reflect.DeepEqual(reply, &packets.Pubrel{PacketID: p2.PacketID}) {
		t.Fatalf("setup: PUBREC answered with %v", reply)
	}

	q2 := pub("q2", 2)
	q2.Properties = fullProps(2)
	s.Enqueue(Pending{Packet: &packets.Publish{Topic: "q0", Payload: []byte{}}, Tag: "q0"})
	s.Enqueue(Pending{Packet: sub("qs/1", "qs/2"), Tag: "qs"})
	s.Enqueue(Pending{Packet: &packets.Unsubscribe{Topics: []string{"c"}}, Tag: "qu"})
	s.Enqueue(Pending{Packet: q2, Tag: "q2"})

	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 20})
	if _, err := s.Ack(20, 2, 0, 0); err != nil {
		t.Fatal(err)
	}
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 21})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 1, PacketID: 22})
	if t, ok := t.(*testing.T); ok {
		checkInvariants(t, s)
	}
	return f
}

// saved returns the session as Save writes it.
func saved(t testing.TB, s *MqttState) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.Save(&b); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return b.Bytes()
}

func mustLoad(t testing.TB, data []byte) *MqttState {
	t.Helper()
	s, err := Load(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// fileOf builds a file of the format with a valid checksum around any
// records: for tests of what the checksum does not catch.
func fileOf(version uint16, recs ...Record) []byte {
	b := binary.BigEndian.AppendUint16([]byte(magic), version)
	for _, r := range recs {
		b = append(b, byte(r.Kind))
		b = binary.AppendUvarint(b, uint64(len(r.Key)))
		b = append(b, r.Key...)
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// recordsOf returns the session's records, copied.
func recordsOf(s *MqttState) []Record {
	var out []Record
	_ = s.eachRecord(nil, func(r Record) error {
		out = append(out, Record{Kind: r.Kind, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
		return nil
	})
	return out
}

// normPacket returns a copy of a request packet as it is saved: no
// packet id for queued (un)subscribes (a new one is taken when sent), no
// topic alias.
func normPacket(p packets.Packet, keepID bool) packets.Packet {
	switch pk := p.(type) {
	case *packets.Publish:
		c := *pk
		if c.Properties != nil && c.Properties.TopicAlias != nil {
			pr := *c.Properties
			pr.TopicAlias = nil
			c.Properties = &pr
		}
		return &c
	case *packets.Subscribe:
		c := *pk
		if !keepID {
			c.PacketID = 0
		}
		return &c
	case *packets.Unsubscribe:
		c := *pk
		if !keepID {
			c.PacketID = 0
		}
		return &c
	}
	return p
}

// sameSession checks that got holds the same session as want, as far as
// it is saved: everything but tags (Resubscribe excepted), configuration,
// limits and MarkSent times.
func sameSession(t *testing.T, want, got *MqttState) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("reloaded session differs: "+format, args...)
	}
	if want.identity != got.identity {
		fail("identity %+v, want %+v", got.identity, want.identity)
	}
	if want.nextID != got.nextID || want.seq != got.seq {
		fail("counters (%d, %d), want (%d, %d)", got.nextID, got.seq, want.nextID, want.seq)
	}
	if !maps.Equal(want.inUse, got.inUse) {
		fail("ids in use %v, want %v", slices.Sorted(maps.Keys(got.inUse)), slices.Sorted(maps.Keys(want.inUse)))
	}
	if want.outgoing.Len() != got.outgoing.Len() {
		fail("%d publishes in flight, want %d", got.outgoing.Len(), want.outgoing.Len())
	}
	for id, w := range want.outgoing.All() {
		g, ok := got.outgoing.Get(id)
		if !ok {
			fail("publish %d not in flight", id)
		}
		if g.Stage != w.Stage || g.seq != w.seq || g.Tag != nil {
			fail("publish %d: stage %d seq %d tag %v, want %d %d nil", id, g.Stage, g.seq, g.Tag, w.Stage, w.seq)
		}
		if !reflect.DeepEqual(normPacket(w.Publish, true), g.Publish) {
			fail("publish %d: %v, want %v", id, g.Publish, w.Publish)
		}
	}
	for _, pair := range [][2]map[uint16]sentRequest{{want.subscribing.Clone(), got.subscribing.Clone()}, {want.unsubscribing.Clone(), got.unsubscribing.Clone()}} {
		w, g := pair[0], pair[1]
		if len(w) != len(g) {
			fail("%d (un)subscribes in flight, want %d", len(g), len(w))
		}
		for id, wr := range w {
			gr, ok := g[id]
			if !ok || gr.seq != wr.seq || isResubscribe(gr.Pending) != isResubscribe(wr.Pending) {
				fail("(un)subscribe %d: %+v, want %+v", id, gr, wr)
			}
			if !reflect.DeepEqual(normPacket(wr.Packet, true), gr.Packet) {
				fail("(un)subscribe %d: %v, want %v", id, gr.Packet, wr.Packet)
			}
		}
	}
	wq, gq := want.QueuedRequests(), got.QueuedRequests()
	if len(wq) != len(gq) {
		fail("%d queued, want %d", len(gq), len(wq))
	}
	wk, gk := queueKeys(want), queueKeys(got)
	for i := range wq {
		if wk[i] != gk[i] {
			fail("queued[%d] at position %d, want %d", i, gk[i], wk[i])
		}
		if isResubscribe(wq[i]) != isResubscribe(gq[i]) || (!isResubscribe(gq[i]) && gq[i].Tag != nil) {
			fail("queued[%d] tag %v, want %v", i, gq[i].Tag, wq[i].Tag)
		}
		if w, g := normPacket(wq[i].Packet, false), normPacket(gq[i].Packet, false); !reflect.DeepEqual(w, g) {
			fail("queued[%d] = %v, want %v", i, g, w)
		}
	}
	if !maps.Equal(want.incomingQoS2.Clone(), got.incomingQoS2.Clone()) || !maps.Equal(want.unackedQoS1.Clone(), got.unackedQoS1.Clone()) {
		fail("incoming %v %v, want %v %v", got.incomingQoS2.Clone(), got.unackedQoS1.Clone(), want.incomingQoS2.Clone(), want.unackedQoS1.Clone())
	}
	if !maps.Equal(want.subscriptions.Clone(), got.subscriptions.Clone()) {
		fail("subscriptions %v, want %v", got.subscriptions.Clone(), want.subscriptions.Clone())
	}
	if !reflect.DeepEqual(want.Subscriptions(), got.Subscriptions()) {
		fail("Subscriptions() %v, want %v", got.Subscriptions(), want.Subscriptions())
	}
	checkInvariants(t, got)
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("%s: error %v, want one wrapping ErrCorruptState", what, err)
	}
}

// queueKeys returns the positions of the queued requests, front first.
func queueKeys(s *MqttState) []int64 {
	var ks []int64
	for k := range s.queue.All() {
		ks = append(ks, k)
	}
	return ks
}
