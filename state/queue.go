package state

import (
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Enqueue accepts a request into the session. It is sent when NextToSend
// returns it. The caller validates the request first.
func (s *MqttState) Enqueue(p Pending) { s.queue.PushBack(p) }

// pushFront puts requests back at the head of the queue, in order.
func (s *MqttState) pushFront(ps []Pending) { s.queue.PushFront(ps) }

// ToSend is what NextToSend returns: a request to write now, a request
// refused, or nothing.
type ToSend struct {
	// Pending is the request. Its Packet, with its packet id, is what to
	// write: a PUBLISH, SUBSCRIBE or UNSUBSCRIBE, or a replay held back
	// by the window (a PUBLISH with DUP set, or a PUBREL). A nil Packet
	// means there is nothing to send now.
	Pending
	// Err, beside a Packet, says why the request can never be sent on
	// this connection (e.g. QoS above the broker's maximum): it was
	// removed from the queue; report it and do not write it. Without a
	// Packet, it says why nothing can be sent when that is not an empty
	// queue or a full window: ErrNoPacketID, every packet id is in use
	// until acks free some.
	Err error
}

// NextToSend takes the oldest queued request if it may be sent now, gives
// it a packet id and records it as in flight. It returns nothing (a nil
// Packet) when the queue is empty or its head is a QoS 1/2 publish and
// the window is full (order is kept: nothing overtakes it). A request that
// can never be sent on this connection is removed and returned with Err
// set.
//
// If writing the packet fails for a reason that concerns only this
// request (too large), call Abandon.
func (s *MqttState) NextToSend() ToSend { return s.NextToSendAt(time.Time{}) }

// NextToSendAt is NextToSend at time now, which applies the Message
// Expiry of publishes queued with EnqueueAt: one whose deadline has
// passed is removed and returned with Err wrapping ErrExpired (report it;
// do not write it), one still in time gets what remains of its interval
// (rounded up to whole seconds). A zero now is NextToSend.
func (s *MqttState) NextToSendAt(now time.Time) ToSend {
	for len(s.replayHold) > 0 {
		// Replays held back by the window go first, in order.
		if s.outgoing.Len()-len(s.replayHold) >= s.Window() {
			return ToSend{}
		}
		id := s.replayHold[0]
		s.replayHold = s.replayHold[1:]
		o, inFlight := s.outgoing.Get(id)
		if !inFlight {
			continue
		}
		var pkt packets.Packet = o.Publish
		if o.Stage == AwaitingComplete {
			pkt = &packets.Pubrel{PacketID: id}
		}
		return ToSend{Pending: Pending{Packet: pkt, Tag: o.Tag}}
	}
	p, ok := s.queue.Front()
	if !ok {
		return ToSend{}
	}
	if pub, isPub := p.Packet.(*packets.Publish); isPub {
		if expiry(p, pub, now) {
			s.queue.PopFront()
			return ToSend{Pending: p, Err: fmt.Errorf("%w: it expired at %s", ErrExpired, p.Expires.UTC().Format(time.RFC3339))}
		}
		if pub.QoS > s.limits.MaximumQoS {
			s.queue.PopFront()
			return ToSend{Pending: p, Err: fmt.Errorf("%w: QoS %d (broker maximum is %d)", ErrNotSupported, pub.QoS, s.limits.MaximumQoS)}
		}
		if pub.Retain && !s.limits.RetainAvailable {
			s.queue.PopFront()
			return ToSend{Pending: p, Err: fmt.Errorf("%w: retained messages", ErrNotSupported)}
		}
		if pub.QoS > 0 && s.outgoing.Len() >= s.Window() {
			return ToSend{}
		}
		if pub.QoS == 0 {
			s.queue.PopFront()
			return ToSend{Pending: p}
		}
	}
	switch p.Packet.(type) {
	case *packets.Publish, *packets.Subscribe, *packets.Unsubscribe:
	default:
		s.queue.PopFront()
		return ToSend{Pending: p, Err: fmt.Errorf("state: cannot queue a %T", p.Packet)}
	}
	id, err := s.allocID()
	if err != nil {
		return ToSend{Err: err}
	}
	s.queue.PopFront()
	s.seq++
	switch pk := p.Packet.(type) {
	case *packets.Publish:
		pk.PacketID = id
		s.outgoing.Set(id, &Outgoing{Publish: pk, Stage: AwaitingAck, Tag: p.Tag, seq: s.seq, topic: pk.Topic})
	case *packets.Subscribe:
		pk.PacketID = id
		s.subscribing.Set(id, sentRequest{p, s.seq})
	case *packets.Unsubscribe:
		pk.PacketID = id
		s.unsubscribing.Set(id, sentRequest{p, s.seq})
	}
	return ToSend{Pending: p}
}

// DropQueued removes the queued requests for which drop returns true and
// returns them, oldest first; the others keep their order.
func (s *MqttState) DropQueued(drop func(Pending) bool) []Pending {
	return s.queue.DeleteFunc(drop)
}

// DropQueuedQoS0 removes the queued QoS 0 publishes and returns them,
// oldest first (for an event loop that drops QoS 0 messages while
// offline).
func (s *MqttState) DropQueuedQoS0() []Pending {
	return s.DropQueued(func(p Pending) bool {
		pub, ok := p.Packet.(*packets.Publish)
		return ok && pub.QoS == 0
	})
}

// Abandon forgets a request that NextToSend returned but that could not be
// written (e.g. it exceeds the broker's maximum packet size), freeing its
// packet id.
func (s *MqttState) Abandon(pkt packets.Packet) {
	switch pk := pkt.(type) {
	case *packets.Publish:
		if o, ok := s.outgoing.Get(pk.PacketID); ok && pk.QoS > 0 {
			s.unlinkSent(o)
			s.outgoing.Delete(pk.PacketID)
			s.freeID(pk.PacketID)
		}
	case *packets.Subscribe:
		if s.subscribing.Delete(pk.PacketID) {
			s.freeID(pk.PacketID)
		}
	case *packets.Unsubscribe:
		if s.unsubscribing.Delete(pk.PacketID) {
			s.freeID(pk.PacketID)
		}
	}
}
