package state

import (
	"fmt"

	"github.com/eclipse/paho.golang/packets"
)

// Enqueue accepts a request into the session. It is sent when NextToSend
// returns it. The caller validates the request first.
func (s *MqttState) Enqueue(p Pending) {
	// Reclaim the sent prefix once it is at least half the slice, so a
	// queue that never drains completely does not grow without bound
	// (amortised O(1): each move is paid for by as many pops).
	if s.head > 0 && s.head >= len(s.queue)/2 {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.head = 0
	}
	p.key = s.qBack
	s.qBack++
	s.touchQueue(p, false, true)
	s.queue = append(s.queue, p)
}

// pushFront puts requests back at the head of the queue, in order.
func (s *MqttState) pushFront(ps []Pending) {
	if len(ps) == 0 {
		return
	}
	s.qFront -= int64(len(ps))
	for i := range ps {
		ps[i].key = s.qFront + int64(i)
		s.touchQueue(ps[i], false, true)
	}
	rest := s.queue[s.head:]
	q := make([]Pending, 0, len(ps)+len(rest))
	q = append(q, ps...)
	q = append(q, rest...)
	s.queue, s.head = q, 0
}

// NextToSend takes the oldest queued request if it may be sent now, gives
// it a packet id and records it as in flight. It returns ok=false when the
// queue is empty or its head is a QoS 1/2 publish and the window is full
// (order is kept: nothing overtakes it). A request that can never be sent
// on this connection (e.g. QoS above the broker's maximum) is removed and
// returned with ok=true and a non-nil error; the caller reports it.
//
// The returned packet is the one to write. If writing fails for a reason
// that concerns only this request (too large), call Abandon.
func (s *MqttState) NextToSend() (p Pending, pkt packets.Packet, ok bool, err error) {
	for len(s.replayHold) > 0 {
		// Replays held back by the window go first, in order.
		if len(s.outgoing)-len(s.replayHold) >= s.Window() {
			return Pending{}, nil, false, nil
		}
		id := s.replayHold[0]
		s.replayHold = s.replayHold[1:]
		o, inFlight := s.outgoing[id]
		if !inFlight {
			continue
		}
		var pkt packets.Packet = o.Publish
		if o.Stage == AwaitingComplete {
			pkt = &packets.Pubrel{PacketID: id}
		}
		return Pending{Packet: pkt, Tag: o.Tag}, pkt, true, nil
	}
	if s.Queued() == 0 {
		return Pending{}, nil, false, nil
	}
	p = s.queue[s.head]
	if pub, isPub := p.Packet.(*packets.Publish); isPub {
		if pub.QoS > s.limits.MaximumQoS {
			s.pop()
			return p, nil, true, fmt.Errorf("%w: QoS %d (broker maximum is %d)", ErrNotSupported, pub.QoS, s.limits.MaximumQoS)
		}
		if pub.Retain && !s.limits.RetainAvailable {
			s.pop()
			return p, nil, true, fmt.Errorf("%w: retained messages", ErrNotSupported)
		}
		if pub.QoS > 0 && len(s.outgoing) >= s.Window() {
			return Pending{}, nil, false, nil
		}
	}
	id := uint16(0)
	needsID := true
	if pub, isPub := p.Packet.(*packets.Publish); isPub && pub.QoS == 0 {
		needsID = false
	}
	if needsID {
		if id, err = s.allocID(); err != nil {
			return Pending{}, nil, false, err
		}
	}
	s.pop()
	switch pk := p.Packet.(type) {
	case *packets.Publish:
		if pk.QoS > 0 {
			pk.PacketID = id
			s.seq++
			s.touchOut(id)
			s.outgoing[id] = &Outgoing{Publish: pk, Stage: AwaitingAck, Tag: p.Tag, seq: s.seq, topic: pk.Topic}
		}
	case *packets.Subscribe:
		pk.PacketID = id
		s.seq++
		s.touchSubscribing(id)
		s.subscribing[id] = sentRequest{p, s.seq}
	case *packets.Unsubscribe:
		pk.PacketID = id
		s.seq++
		s.touchUnsubscribing(id)
		s.unsubscribing[id] = sentRequest{p, s.seq}
	default:
		s.freeID(id)
		return p, nil, true, fmt.Errorf("state: cannot queue a %T", p.Packet)
	}
	return p, p.Packet, true, nil
}

func (s *MqttState) pop() {
	s.touchQueue(s.queue[s.head], true, false)
	s.queue[s.head] = Pending{}
	s.head++
}

// DropQueued removes the queued requests for which drop returns true and
// returns them, oldest first; the others keep their order.
func (s *MqttState) DropQueued(drop func(Pending) bool) []Pending {
	var dropped []Pending
	q := s.queue[s.head:]
	kept := q[:0]
	for _, p := range q {
		if drop(p) {
			s.touchQueue(p, true, false)
			dropped = append(dropped, p)
			continue
		}
		kept = append(kept, p)
	}
	clear(q[len(kept):])
	s.queue = s.queue[:s.head+len(kept)]
	return dropped
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
		if o, ok := s.outgoing[pk.PacketID]; ok && pk.QoS > 0 {
			s.touchOut(pk.PacketID)
			s.unlinkSent(o)
			delete(s.outgoing, pk.PacketID)
			s.freeID(pk.PacketID)
		}
	case *packets.Subscribe:
		if _, ok := s.subscribing[pk.PacketID]; ok {
			s.touchSubscribing(pk.PacketID)
			delete(s.subscribing, pk.PacketID)
			s.freeID(pk.PacketID)
		}
	case *packets.Unsubscribe:
		if _, ok := s.unsubscribing[pk.PacketID]; ok {
			s.touchUnsubscribing(pk.PacketID)
			delete(s.unsubscribing, pk.PacketID)
			s.freeID(pk.PacketID)
		}
	}
}
