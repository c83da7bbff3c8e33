package state

import (
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// MarkSent records that pkt, a PUBLISH of a publish in flight or a PUBREL
// of one awaiting PUBCOMP, was written at now. The event loop calls it
// right after writing such a packet (replays included), before the next
// call into the session; other packets are ignored. OldestUnacked reports
// the earliest of these times.
func (s *MqttState) MarkSent(pkt packets.Packet, now time.Time) {
	var o *Outgoing
	switch pk := pkt.(type) {
	case *packets.Publish:
		if pk.QoS == 0 {
			return
		}
		if o, _ = s.outgoing.Get(pk.PacketID); o == nil || o.Publish != pk {
			return
		}
	case *packets.Pubrel:
		if o, _ = s.outgoing.Get(pk.PacketID); o == nil || o.Stage != AwaitingComplete {
			return
		}
	default:
		return
	}
	s.unlinkSent(o)
	o.sentAt = now
	// Times normally come in order: append, or walk back from the tail.
	after := s.sentTail
	for after != nil && after.sentAt.After(now) {
		after = after.prev
	}
	o.listed = true
	o.prev = after
	if after == nil {
		o.next = s.sentHead
		s.sentHead = o
	} else {
		o.next = after.next
		after.next = o
	}
	if o.next == nil {
		s.sentTail = o
	} else {
		o.next.prev = o
	}
}

// OldestUnacked returns the earliest time MarkSent recorded for a publish
// still in flight on this connection; ok is false when there is none. An
// event loop with an ack timeout closes the connection when it is older
// than the timeout (MQTT 5 forbids resending on the same connection; the
// next connection replays).
func (s *MqttState) OldestUnacked() (sent time.Time, ok bool) {
	if s.sentHead == nil {
		return time.Time{}, false
	}
	return s.sentHead.sentAt, true
}

func (s *MqttState) unlinkSent(o *Outgoing) {
	if !o.listed {
		return
	}
	if o.prev == nil {
		s.sentHead = o.next
	} else {
		o.prev.next = o.next
	}
	if o.next == nil {
		s.sentTail = o.prev
	} else {
		o.next.prev = o.prev
	}
	o.prev, o.next, o.listed, o.sentAt = nil, nil, false, time.Time{}
}

// forgetSent empties the MarkSent list (a new connection).
func (s *MqttState) forgetSent() {
	for o := s.sentHead; o != nil; {
		next := o.next
		o.prev, o.next, o.listed, o.sentAt = nil, nil, false, time.Time{}
		o = next
	}
	s.sentHead, s.sentTail = nil, nil
}

// FirstUnacked returns the publish in flight that MarkSent recorded
// earliest on this connection and that still awaits its PUBACK or PUBREC
// (PUBRELs are passed over): when the broker closes the connection, the
// first message it did not acknowledge is the one it most likely choked
// on. ok is false when there is none.
func (s *MqttState) FirstUnacked() (o Outgoing, ok bool) {
	for e := s.sentHead; e != nil; e = e.next {
		if e.Stage == AwaitingAck {
			o = *e
			o.prev, o.next = nil, nil
			return o, true
		}
	}
	return Outgoing{}, false
}
