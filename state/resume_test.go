package state

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// subscribeOK subscribes through a SUBACK that grants every filter.
func subscribeOK(t *testing.T, s *MqttState, subID int, opts ...packets.SubOptions) {
	t.Helper()
	p := &packets.Subscribe{Properties: &packets.Properties{}, Subscriptions: opts}
	if subID > 0 {
		p.Properties.SubscriptionIdentifier = ptr(subID)
	}
	s.Enqueue(Pending{Packet: p, Tag: "user"})
	id := sendID(t, s)
	handle(t, s, &packets.Suback{PacketID: id, Reasons: make([]byte, len(opts))})
}

func TestResubscribeWhenSessionLost(t *testing.T) {
	s := New(Config{})
	optA := packets.SubOptions{Topic: "a/+", QoS: 1, NoLocal: true}
	optB := packets.SubOptions{Topic: "b/#", QoS: 2, RetainAsPublished: true, RetainHandling: 2}
	optC := packets.SubOptions{Topic: "c", QoS: 0, RetainHandling: 1}
	optD := packets.SubOptions{Topic: "d", QoS: 1}
	subscribeOK(t, s, 0, optA)
	subscribeOK(t, s, 7, optB, optC)
	subscribeOK(t, s, 300, optD) // a 2-byte subscription identifier
	s.Enqueue(Pending{Packet: pub("inflight", 1), Tag: "inflight"})
	sendID(t, s)
	s.Enqueue(Pending{Packet: pub("later", 1), Tag: "later"})

	// The broker kept the session: nothing to re-subscribe.
	if r := s.Connected(connack(true, nil), true); len(r.Resubscribed) != 0 || s.Queued() != 1 {
		t.Fatalf("session present: Resubscribed %v, queue %v", r.Resubscribed, queueOf(s))
	}
	// Lost, but the option is off.
	c := mustLoad(t, saved(t, s))
	if r := c.Connected(connack(false, nil), false); len(r.Resubscribed) != 0 || !slices.Equal(queueOf(c), []string{"pub:inflight", "pub:later"}) {
		t.Fatalf("resubscribe off: Resubscribed %v, queue %v", r.Resubscribed, queueOf(c))
	}

	r := s.Connected(connack(false, nil), true)
	if want := []string{"a/+", "b/#", "c", "d"}; !slices.Equal(r.Resubscribed, want) {
		t.Fatalf("Resubscribed = %v, want %v", r.Resubscribed, want)
	}
	if r.Requeued != 1 {
		t.Fatalf("Requeued = %d, want 1 (the publish in flight)", r.Requeued)
	}
	// One SUBSCRIBE per subscription identifier, at the head, before the
	// requeued publish, with each filter's own options.
	want := []string{"resub:a/+", "resub:b/#,c", "resub:d", "pub:inflight", "pub:later"}
	if got := queueOf(s); !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	q := s.QueuedRequests()
	wantOpts := [][]packets.SubOptions{{optA}, {optB, optC}, {optD}}
	wantIDs := []int{0, 7, 300}
	for i := range 3 {
		p := q[i].Packet.(*packets.Subscribe)
		if _, ok := q[i].Tag.(Resubscribe); !ok {
			t.Fatalf("queue[%d] tag %v, want Resubscribe", i, q[i].Tag)
		}
		if !reflect.DeepEqual(p.Subscriptions, wantOpts[i]) {
			t.Fatalf("queue[%d] options %+v, want %+v", i, p.Subscriptions, wantOpts[i])
		}
		var id int
		if p.Properties.SubscriptionIdentifier != nil {
			id = *p.Properties.SubscriptionIdentifier
		}
		if id != wantIDs[i] {
			t.Fatalf("queue[%d] subscription identifier %d, want %d", i, id, wantIDs[i])
		}
	}
	checkInvariants(t, s)

	// The broker refuses "c" this time: it is no longer a subscription.
	// (A refused user SUBSCRIBE leaves an existing subscription alone.)
	for range 3 {
		_, pkt := send(t, s)
		p := pkt.(*packets.Subscribe)
		reasons := make([]byte, len(p.Subscriptions))
		for i, o := range p.Subscriptions {
			if o.Topic == "c" {
				reasons[i] = 0x87
			}
		}
		ev, _ := handle(t, s, &packets.Suback{PacketID: p.PacketID, Reasons: reasons})
		if _, ok := ev.(SubscribeDone).Tag.(Resubscribe); !ok {
			t.Fatalf("SubscribeDone tag %v, want Resubscribe", ev.(SubscribeDone).Tag)
		}
	}
	if got := slices.Sorted(mapsKeys(s.Subscriptions())); !slices.Equal(got, []string{"a/+", "b/#", "d"}) {
		t.Fatalf("subscriptions after the refusal: %v", got)
	}
	if s.SubscriptionIdentifier("b/#") != 7 || s.SubscriptionIdentifier("d") != 300 {
		t.Fatalf("subscription identifiers lost")
	}
	send(t, s) // the publishes
	send(t, s)
	s.Enqueue(Pending{Packet: sub("d"), Tag: "user"})
	_, pkt := send(t, s)
	handle(t, s, &packets.Suback{PacketID: pkt.(*packets.Subscribe).PacketID, Reasons: []byte{0x80}})
	if _, ok := s.Subscriptions()["d"]; !ok {
		t.Fatalf("a refused user SUBSCRIBE removed the existing subscription")
	}
}

// Re-subscribing again (the connection dropped before the SUBACKs) never
// doubles the requests: the fresh set replaces queued and unanswered ones.
func TestResubscribeReplacesEarlierRequests(t *testing.T) {
	s := New(Config{})
	subscribeOK(t, s, 0, packets.SubOptions{Topic: "x", QoS: 1})
	subscribeOK(t, s, 5, packets.SubOptions{Topic: "y", QoS: 2})
	s.Enqueue(Pending{Packet: sub("user"), Tag: "user"})
	want := []string{"resub:x", "resub:y", "sub:user"}

	s.Connected(connack(false, nil), true)
	s.Connected(connack(false, nil), true)
	if got := queueOf(s); !slices.Equal(got, want) {
		t.Fatalf("after two lost sessions: %v, want %v", got, want)
	}
	// One resubscribe went out, unanswered; then the session is lost again.
	send(t, s)
	s.Connected(connack(false, nil), true)
	if got := queueOf(s); !slices.Equal(got, want) {
		t.Fatalf("after a lost session with a resubscribe in flight: %v, want %v", got, want)
	}
	// With the session present, the queued ones stay (the broker never
	// received them), once.
	send(t, s)
	s.Connected(connack(true, nil), true)
	if got := queueOf(s); !slices.Equal(got, want) {
		t.Fatalf("after a kept session: %v, want %v", got, want)
	}
	checkInvariants(t, s)
}

// Re-subscribe packets respect the broker's maximum packet size, and use
// as few packets as it allows.
func TestResubscribeSplitsAtMaximumPacketSize(t *testing.T) {
	const limit = 300
	s := New(Config{})
	want := map[string]packets.SubOptions{}
	for i := range 40 {
		o := packets.SubOptions{Topic: fmt.Sprintf("sensors/%03d/%s", i, strings.Repeat("x", i%37)), QoS: byte(i % 3), NoLocal: i%2 == 0}
		id := 0
		if i >= 25 {
			id = 200
		}
		subscribeOK(t, s, id, o)
		want[o.Topic] = o
	}
	r := s.Connected(connack(false, &packets.Properties{MaximumPacketSize: ptr[uint32](limit)}), true)
	if len(r.Resubscribed) != 40 {
		t.Fatalf("Resubscribed %d filters, want 40", len(r.Resubscribed))
	}
	size := func(p *packets.Subscribe) int {
		var b bytes.Buffer
		if _, err := p.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return b.Len()
	}
	q := s.QueuedRequests()
	got := map[string]packets.SubOptions{}
	for i, p := range q {
		sp := p.Packet.(*packets.Subscribe)
		sp.PacketID = 1
		if n := size(sp); n > limit {
			t.Fatalf("SUBSCRIBE %d is %d bytes, over the broker's %d", i, n, limit)
		}
		for _, o := range sp.Subscriptions {
			got[o.Topic] = o
		}
		// Fullness: the next packet's first filter would not have fit,
		// unless the subscription identifier changes there.
		if i+1 < len(q) {
			next := q[i+1].Packet.(*packets.Subscribe)
			if reflect.DeepEqual(next.Properties, sp.Properties) {
				grown := *sp
				grown.Subscriptions = append(slices.Clone(sp.Subscriptions), next.Subscriptions[0])
				if n := size(&grown); n <= limit {
					t.Fatalf("SUBSCRIBE %d could hold one more filter (%d bytes): too many packets", i, n)
				}
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("re-subscribed %v, want %v", got, want)
	}
	if len(q) < 2 {
		t.Fatalf("%d packets: the limit was not exercised", len(q))
	}
}

// Topic aliases belong to one connection: replayed and requeued
// publishes carry their topic and no alias.
func TestReplayCarriesNoTopicAlias(t *testing.T) {
	for _, present := range []bool{true, false} {
		t.Run(fmt.Sprintf("session present %v", present), func(t *testing.T) {
			s := New(Config{})
			a, b := pub("alias/a", 1), pub("alias/b", 2)
			s.Enqueue(Pending{Packet: a})
			s.Enqueue(Pending{Packet: b})
			sendID(t, s)
			sendID(t, s)
			// The event loop rewrote them on the wire: a with an alias
			// instead of its topic, b with an alias and its topic.
			shared := &packets.Properties{TopicAlias: ptr[uint16](1), ContentType: "ct"}
			a.Topic, a.Properties = "", shared
			b.Properties = &packets.Properties{TopicAlias: ptr[uint16](2)}
			queued := pub("alias/c", 1)
			queued.Properties = &packets.Properties{TopicAlias: ptr[uint16](3)}
			s.Enqueue(Pending{Packet: queued})

			r := s.Connected(connack(present, nil), true)
			var pubs []*packets.Publish
			if present {
				for _, p := range r.Replay {
					pubs = append(pubs, p.(*packets.Publish))
				}
			}
			for _, p := range s.QueuedRequests() {
				pubs = append(pubs, p.Packet.(*packets.Publish))
			}
			if len(pubs) != 3 {
				t.Fatalf("%d publishes to send, want 3", len(pubs))
			}
			for i, p := range pubs {
				if want := []string{"alias/a", "alias/b", "alias/c"}[i]; p.Topic != want {
					t.Fatalf("publish %d has topic %q, want %q", i, p.Topic, want)
				}
				if p.Properties != nil && p.Properties.TopicAlias != nil {
					t.Fatalf("publish %s still carries topic alias %d", p.Topic, *p.Properties.TopicAlias)
				}
			}
			if pubs[0].Properties.ContentType != "ct" || shared.TopicAlias == nil {
				t.Fatalf("other properties lost, or the shared properties changed in place")
			}
		})
	}
}

func TestMarkSentOldestUnacked(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	wantOldest := func(t *testing.T, s *MqttState, want time.Time, ok bool) {
		t.Helper()
		got, gotOK := s.OldestUnacked()
		if gotOK != ok || !got.Equal(want) {
			t.Fatalf("OldestUnacked() = %v, %v; want %v, %v", got, gotOK, want, ok)
		}
	}
	s := New(Config{})
	wantOldest(t, s, time.Time{}, false)
	a, b, c := pub("a", 1), pub("b", 2), pub("c", 0)
	for _, p := range []packets.Packet{a, b, c, sub("d")} {
		s.Enqueue(Pending{Packet: p})
	}
	for i := range 4 {
		_, pkt := send(t, s)
		s.MarkSent(pkt, at(i))
	}
	wantOldest(t, s, at(0), true)
	// Only publishes in flight count: a stale packet with a known id is
	// ignored.
	s.MarkSent(&packets.Publish{QoS: 1, PacketID: a.PacketID}, at(-5))
	s.MarkSent(&packets.Pubrel{PacketID: a.PacketID}, at(-5))
	wantOldest(t, s, at(0), true)

	handle(t, s, &packets.Puback{PacketID: a.PacketID})
	wantOldest(t, s, at(1), true)
	_, rel := handle(t, s, &packets.Pubrec{PacketID: b.PacketID})
	s.MarkSent(rel, at(5))
	wantOldest(t, s, at(5), true)
	// Times out of order are handled.
	e := pub("e", 1)
	s.Enqueue(Pending{Packet: e})
	_, pkt := send(t, s)
	s.MarkSent(pkt, at(4))
	wantOldest(t, s, at(4), true)
	handle(t, s, &packets.Puback{PacketID: e.PacketID})
	wantOldest(t, s, at(5), true)

	// A new connection forgets the times; replays are marked again.
	r := s.Connected(connack(true, nil), true)
	wantOldest(t, s, time.Time{}, false)
	for i, p := range r.Replay {
		s.MarkSent(p, at(10+i))
	}
	wantOldest(t, s, at(10), true)
	handle(t, s, &packets.Pubcomp{PacketID: b.PacketID})
	wantOldest(t, s, time.Time{}, false)

	// Abandon and a lost session drop their publishes from the list.
	f := pub("f", 1)
	s.Enqueue(Pending{Packet: f})
	_, pkt = send(t, s)
	s.MarkSent(pkt, at(20))
	s.Abandon(pkt)
	wantOldest(t, s, time.Time{}, false)
	s.Enqueue(Pending{Packet: f})
	_, pkt = send(t, s)
	s.MarkSent(pkt, at(21))
	s.Connected(connack(false, nil), true)
	wantOldest(t, s, time.Time{}, false)

	// Many publishes: the oldest is always the earliest time among those
	// still in flight.
	s = New(Config{})
	times := map[uint16]time.Time{}
	for i := range 200 {
		s.Enqueue(Pending{Packet: pub("m", 1)})
		_, pkt := send(t, s)
		tm := at(i % 37) // out of order now and then
		s.MarkSent(pkt, tm)
		times[packetID(t, pkt)] = tm
	}
	for id := range times {
		var min time.Time
		for _, tm := range times {
			if min.IsZero() || tm.Before(min) {
				min = tm
			}
		}
		wantOldest(t, s, min, true)
		handle(t, s, &packets.Puback{PacketID: id})
		delete(times, id)
	}
	wantOldest(t, s, time.Time{}, false)
}

func TestDropQueued(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: pub("inflight0", 0), Tag: "x"})
	s.Enqueue(Pending{Packet: pub("inflight1", 1), Tag: "y"})
	send(t, s)
	send(t, s)
	for i, p := range []packets.Packet{pub("a", 0), pub("b", 1), sub("c"), pub("d", 0), pub("e", 2), unsub("f")} {
		s.Enqueue(Pending{Packet: p, Tag: i})
	}
	dropped := s.DropQueuedQoS0()
	if len(dropped) != 2 || dropped[0].Tag != 0 || dropped[1].Tag != 3 {
		t.Fatalf("DropQueuedQoS0() = %v, want a and d", dropped)
	}
	if got := queueOf(s); !slices.Equal(got, []string{"pub:b", "sub:c", "pub:e", "unsub:f"}) {
		t.Fatalf("queue after DropQueuedQoS0: %v", got)
	}
	if s.InFlight() != 1 {
		t.Fatalf("DropQueuedQoS0 touched the flight")
	}
	if d := s.DropQueuedQoS0(); len(d) != 0 {
		t.Fatalf("second DropQueuedQoS0() = %v", d)
	}
	d := s.DropQueued(func(p Pending) bool { _, ok := p.Packet.(*packets.Publish); return !ok })
	if len(d) != 2 || !slices.Equal(queueOf(s), []string{"pub:b", "pub:e"}) {
		t.Fatalf("DropQueued(not a publish) = %v, queue %v", d, queueOf(s))
	}
	// The queue still works.
	if p, _ := send(t, s); p.Tag != 1 {
		t.Fatalf("sent %v, want b", p.Tag)
	}
	checkInvariants(t, s)
}
