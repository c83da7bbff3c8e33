package state

import (
	"cmp"
	"slices"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Resumed is what Connected reports about the session.
type Resumed struct {
	// Replay are the packets to send before anything new, in order:
	// unacknowledged PUBLISH (DUP set, original ids) and PUBREL, when the
	// broker kept the session.
	Replay []packets.Packet
	// Held counts in-flight publishes that did not fit in the broker's
	// Receive Maximum: NextToSend returns them (DUP set, original ids)
	// before anything new, as acks free the window.
	Held int
	// Requeued counts in-flight publishes and unanswered (un)subscribes
	// put back at the head of the queue as new requests because the broker
	// had no session.
	Requeued int
	// Completed are QoS 2 publishes the broker had already received
	// (PUBREC) when it lost the session: they are done, with no PUBCOMP.
	Completed []PublishDone
	// Resubscribed are the topic filters of the SUBSCRIBE requests queued
	// (tagged Resubscribe) to re-establish the subscriptions the broker
	// lost, in the order they will be sent.
	Resubscribed []string
}

// Connected applies a successful CONNACK: it takes the broker's limits and
// says what to replay. With session present, unacknowledged publishes are
// resent with DUP set and their original ids, and PUBRELs again, in their
// original order. Without, the broker has forgotten them: publishes go back
// to the head of the queue as new ones (nothing is dropped), incoming QoS 2
// ids and pending manual acks are forgotten, and, when resubscribe is true,
// SUBSCRIBE requests for every active subscription (with its options and
// subscription identifier, in as few packets as the broker's maximum
// packet size allows) go to the very head of the queue, tagged
// Resubscribe, replacing any such requests from an earlier connection
// that were not answered.
//
// Replayed and requeued publishes never carry a topic alias (aliases
// belong to one connection): the property is removed and the topic
// restored. The times recorded by MarkSent belong to the previous
// connection and are forgotten.
//
// The first CONNACK, and every one without session present, starts a new
// broker session (Delivered.Session): manual acks owed for messages of
// the earlier one fail with ErrStaleAck.
func (s *MqttState) Connected(ack *packets.Connack, resubscribe bool) Resumed {
	if !ack.SessionPresent || s.session == 0 {
		// A new broker session: acks owed for the old one are stale.
		s.session++
	}
	s.limits = DefaultLimits
	if pr := ack.Properties; pr != nil {
		if pr.ReceiveMaximum != nil && *pr.ReceiveMaximum > 0 {
			s.limits.ReceiveMaximum = *pr.ReceiveMaximum
		}
		if pr.MaximumPacketSize != nil {
			s.limits.MaximumPacketSize = *pr.MaximumPacketSize
		}
		if pr.TopicAliasMaximum != nil {
			s.limits.TopicAliasMaximum = *pr.TopicAliasMaximum
		}
		if pr.MaximumQOS != nil {
			s.limits.MaximumQoS = *pr.MaximumQOS
		}
		if pr.RetainAvailable != nil {
			s.limits.RetainAvailable = *pr.RetainAvailable != 0
		}
	}
	s.forgetSent()
	s.queue.ModifyEach(func(p Pending) bool {
		pub, ok := p.Packet.(*packets.Publish)
		return ok && stripAlias(pub, "")
	})

	inflight := s.InFlightPublishes()
	var r Resumed
	s.replayHold = s.replayHold[:0]
	if ack.SessionPresent {
		// Replay at most the window the broker now allows (its Receive
		// Maximum may be lower than on the last connection,
		// MQTT-3.3.4-7); NextToSend releases the rest, before anything
		// new, as acks free the window.
		window := s.Window()
		for i, o := range inflight {
			id := o.Publish.PacketID
			var pkt packets.Packet = &packets.Pubrel{PacketID: id}
			if o.Stage != AwaitingComplete {
				o, _ := s.outgoing.Modify(id)
				stripAlias(o.Publish, o.topic)
				o.Publish.Duplicate = true
				pkt = o.Publish
			}
			if i < window {
				r.Replay = append(r.Replay, pkt)
			} else {
				s.replayHold = append(s.replayHold, id)
			}
		}
		r.Held = len(s.replayHold)
		// (Un)subscribes in flight are sent again as new requests.
		again := inSendOrder(s.takeUnanswered(nil))
		s.pushFront(again)
		r.Requeued = len(again)
		return r
	}

	s.incomingQoS2.Clear()
	s.unackedQoS1.Clear()
	clear(s.undelivered)
	var unanswered []sentRequest
	for _, o := range inflight {
		id := o.Publish.PacketID
		s.outgoing.Delete(id)
		s.freeID(id)
		if o.Stage == AwaitingComplete {
			r.Completed = append(r.Completed, PublishDone{Publish: o.Publish, Tag: o.Tag})
			continue
		}
		stripAlias(o.Publish, o.topic)
		o.Publish.Duplicate = false
		o.Publish.PacketID = 0
		unanswered = append(unanswered, sentRequest{Pending{Packet: o.Publish, Tag: o.Tag}, o.seq})
	}
	// Publishes and (un)subscribes go back in the order they were sent.
	again := inSendOrder(s.takeUnanswered(unanswered))
	var resubs []Pending
	if resubscribe {
		// Fresh SUBSCRIBEs for every subscription supersede those of an
		// earlier connection.
		again = slices.DeleteFunc(again, isResubscribe)
		s.DropQueued(isResubscribe)
		resubs, r.Resubscribed = s.resubscribes()
	}
	r.Requeued = len(again)
	s.pushFront(append(resubs, again...))
	return r
}

func isResubscribe(p Pending) bool {
	_, ok := p.Tag.(Resubscribe)
	return ok
}

// stripAlias removes a topic alias from an outgoing publish and, if the
// topic was left out for it, restores it from topic. It reports whether
// the publish changed.
func stripAlias(p *packets.Publish, topic string) bool {
	changed := false
	if p.Properties != nil && p.Properties.TopicAlias != nil {
		c := *p.Properties
		c.TopicAlias = nil
		p.Properties = &c
		changed = true
	}
	if p.Topic == "" && topic != "" {
		p.Topic = topic
		changed = true
	}
	return changed
}

// maxPacketSize is the largest packet MQTT can frame: a 4-byte remaining
// length of at most 268,435,455 plus the fixed header's first byte.
const maxPacketSize = 1 + 4 + vbi.Max

// resubscribes builds SUBSCRIBE requests for every active subscription:
// one per subscription identifier, split where a packet would exceed the
// broker's maximum packet size; filters sorted within each.
func (s *MqttState) resubscribes() ([]Pending, []string) {
	if s.subscriptions.Len() == 0 {
		return nil, nil
	}
	all := make([]subscription, 0, s.subscriptions.Len())
	for _, sb := range s.subscriptions.All() {
		all = append(all, sb)
	}
	slices.SortFunc(all, func(a, b subscription) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.opts.Topic, b.opts.Topic))
	})
	limit := maxPacketSize
	if m := s.limits.MaximumPacketSize; m > 0 && uint64(m) < maxPacketSize {
		limit = int(m)
	}
	var (
		out     []Pending
		filters []string
		cur     *packets.Subscribe
		curID   int
		rem     int // remaining length of cur so far
	)
	for _, sb := range all {
		size := 2 + len(sb.opts.Topic) + 1
		if cur != nil && (sb.id != curID || packetSize(rem+size) > limit) {
			out = append(out, Pending{Packet: cur, Tag: Resubscribe{}})
			cur = nil
		}
		if cur == nil {
			cur = &packets.Subscribe{Properties: &packets.Properties{}}
			curID = sb.id
			props := 0
			if sb.id > 0 {
				id := sb.id
				cur.Properties.SubscriptionIdentifier = &id
				props = 1 + vbi.Len(sb.id)
			}
			rem = 2 + vbi.Len(props) + props
		}
		cur.Subscriptions = append(cur.Subscriptions, sb.opts)
		rem += size
		filters = append(filters, sb.opts.Topic)
	}
	out = append(out, Pending{Packet: cur, Tag: Resubscribe{}})
	return out, filters
}

// packetSize is the size of a packet with this remaining length.
func packetSize(remaining int) int { return 1 + vbi.Len(remaining) + remaining }

// sentRequest is a SUBSCRIBE or UNSUBSCRIBE awaiting its ack, with its
// place in the send order (shared with publishes).
type sentRequest struct {
	Pending
	seq uint64
}

// takeUnanswered moves sent but unanswered (un)subscribes out of flight,
// appending them to dst.
func (s *MqttState) takeUnanswered(dst []sentRequest) []sentRequest {
	for id, r := range s.subscribing.All() {
		dst = append(dst, r)
		s.freeID(id)
	}
	for id, r := range s.unsubscribing.All() {
		dst = append(dst, r)
		s.freeID(id)
	}
	s.subscribing.Clear()
	s.unsubscribing.Clear()
	return dst
}

// inSendOrder returns the requests in the order they were sent. Packet ids
// wrap around, so their order is not the send order.
func inSendOrder(rs []sentRequest) []Pending {
	slices.SortFunc(rs, func(a, b sentRequest) int { return cmpUint64(a.seq, b.seq) })
	ps := make([]Pending, len(rs))
	for i, r := range rs {
		ps[i] = r.Pending
	}
	return ps
}
