package state

import (
	"fmt"
	"slices"

	"github.com/eclipse/paho.golang/packets"
)

// Event is what HandleIncoming reports: a Delivered, PublishDone,
// SubscribeDone, UnsubscribeDone or BrokerDisconnect, nothing else.
type Event interface{ event() }

func (Delivered) event()        {}
func (PublishDone) event()      {}
func (SubscribeDone) event()    {}
func (UnsubscribeDone) event()  {}
func (BrokerDisconnect) event() {}

// The events HandleIncoming reports.
type (
	// Delivered: an application message arrived and is new (not a
	// duplicate of a QoS 2 message already delivered). With ManualAcks,
	// QoS 1 and 2 messages wait for Ack, which takes Session back.
	Delivered struct {
		Publish *packets.Publish
		// Session numbers the broker session the message came from:
		// Connected starts a new one at the first CONNACK and at every
		// CONNACK without session present (0 before the first).
		Session uint64
	}
	// PublishDone: an outgoing QoS 1 or 2 publish completed (PUBACK,
	// PUBCOMP, or a PUBREC with a failure reason code).
	PublishDone struct {
		Publish *packets.Publish
		Tag     any
		// Ack is the packet type that completed the flow: packets.PUBACK,
		// packets.PUBREC (a refusal) or packets.PUBCOMP; 0 when the broker
		// lost the session after PUBREC (Resumed.Completed).
		Ack        byte
		ReasonCode byte
		Properties *packets.Properties
	}
	// SubscribeDone: a SUBACK arrived.
	SubscribeDone struct {
		Subscribe *packets.Subscribe
		Tag       any
		Suback    *packets.Suback
	}
	// UnsubscribeDone: an UNSUBACK arrived.
	UnsubscribeDone struct {
		Unsubscribe *packets.Unsubscribe
		Tag         any
		Unsuback    *packets.Unsuback
	}
	// BrokerDisconnect: the broker sent DISCONNECT; the connection ends.
	BrokerDisconnect struct{ Disconnect *packets.Disconnect }
)

// HandleIncoming applies a packet from the broker. It returns what happened
// (an Event, or nil) and the packet to send in reply (or nil). A reply is
// valid until the next call into the session. An error wrapping
// ErrProtocol means the connection must be closed.
func (s *MqttState) HandleIncoming(cp *packets.ControlPacket) (event Event, reply packets.Packet, err error) {
	switch p := cp.Content.(type) {
	case *packets.Publish:
		return s.incomingPublish(p)
	case *packets.Puback:
		o, ok := s.outgoing.Get(p.PacketID)
		if !ok || o.Publish.QoS != 1 {
			return nil, nil, fmt.Errorf("%w: PUBACK for packet id %d, which has no QoS 1 publish in flight", ErrProtocol, p.PacketID)
		}
		return s.complete(o, packets.PUBACK, p.ReasonCode, p.Properties), nil, nil
	case *packets.Pubrec:
		o, ok := s.outgoing.Get(p.PacketID)
		if !ok || o.Publish.QoS != 2 {
			return nil, nil, fmt.Errorf("%w: PUBREC for packet id %d, which has no QoS 2 publish in flight", ErrProtocol, p.PacketID)
		}
		// "Packet identifier in use" (0x91) for a publish we replayed with
		// DUP after a reconnect means the broker holds this very message
		// awaiting PUBREL — mochi v2.7.9 answers a replay that way instead
		// of with a plain PUBREC (MQTT-4.3.3-10). Releasing it completes the
		// flow with the message delivered once.
		replayedInUse := p.ReasonCode == 0x91 && o.Publish.Duplicate
		if p.ReasonCode >= 0x80 && !replayedInUse {
			return s.complete(o, packets.PUBREC, p.ReasonCode, p.Properties), nil, nil
		}
		if o.Stage != AwaitingComplete {
			o, _ = s.outgoing.Modify(p.PacketID)
			o.Stage = AwaitingComplete
		}
		s.pubrel = packets.Pubrel{PacketID: p.PacketID}
		return nil, &s.pubrel, nil
	case *packets.Pubcomp:
		o, ok := s.outgoing.Get(p.PacketID)
		if !ok || o.Stage != AwaitingComplete {
			return nil, nil, fmt.Errorf("%w: PUBCOMP for packet id %d, which awaits no PUBCOMP", ErrProtocol, p.PacketID)
		}
		return s.complete(o, packets.PUBCOMP, p.ReasonCode, p.Properties), nil, nil
	case *packets.Pubrel:
		sentRec, ok := s.incomingQoS2.Get(p.PacketID)
		s.pubcomp = packets.Pubcomp{PacketID: p.PacketID}
		if !ok {
			// The session may have lost the id (e.g. after a restart):
			// answer as the protocol says rather than failing.
			s.pubcomp.ReasonCode = packets.PubcompPacketIdentifierNotFound
			return nil, &s.pubcomp, nil
		}
		if !sentRec {
			return nil, nil, fmt.Errorf("%w: PUBREL for packet id %d before its PUBREC was sent", ErrProtocol, p.PacketID)
		}
		s.incomingQoS2.Delete(p.PacketID)
		return nil, &s.pubcomp, nil
	case *packets.Suback:
		pend, ok := s.subscribing.Get(p.PacketID)
		if !ok {
			return nil, nil, fmt.Errorf("%w: SUBACK for unknown packet id %d", ErrProtocol, p.PacketID)
		}
		sub := pend.Packet.(*packets.Subscribe)
		if len(p.Reasons) != len(sub.Subscriptions) {
			return nil, nil, fmt.Errorf("%w: SUBACK for packet id %d has %d reason codes for %d filters", ErrProtocol, p.PacketID, len(p.Reasons), len(sub.Subscriptions))
		}
		s.subscribing.Delete(p.PacketID)
		s.freeID(p.PacketID)
		subID := 0
		if sub.Properties != nil && sub.Properties.SubscriptionIdentifier != nil {
			subID = *sub.Properties.SubscriptionIdentifier
		}
		_, resub := pend.Tag.(Resubscribe)
		for i, opt := range sub.Subscriptions {
			switch {
			case p.Reasons[i] < 0x80:
				s.subscriptions.Set(opt.Topic, subscription{opts: opt, id: subID})
			case resub:
				// The broker lost the session and refuses the
				// subscription now: it is no longer active.
				s.subscriptions.Delete(opt.Topic)
			}
		}
		return SubscribeDone{Subscribe: sub, Tag: pend.Tag, Suback: p}, nil, nil
	case *packets.Unsuback:
		pend, ok := s.unsubscribing.Get(p.PacketID)
		if !ok {
			return nil, nil, fmt.Errorf("%w: UNSUBACK for unknown packet id %d", ErrProtocol, p.PacketID)
		}
		unsub := pend.Packet.(*packets.Unsubscribe)
		if len(p.Reasons) != 0 && len(p.Reasons) != len(unsub.Topics) {
			return nil, nil, fmt.Errorf("%w: UNSUBACK for packet id %d has %d reason codes for %d topics", ErrProtocol, p.PacketID, len(p.Reasons), len(unsub.Topics))
		}
		s.unsubscribing.Delete(p.PacketID)
		s.freeID(p.PacketID)
		for i, t := range unsub.Topics {
			// A refused unsubscribe (reason ≥ 0x80) leaves the
			// subscription in place.
			if i < len(p.Reasons) && p.Reasons[i] >= 0x80 {
				continue
			}
			s.subscriptions.Delete(t)
		}
		return UnsubscribeDone{Unsubscribe: unsub, Tag: pend.Tag, Unsuback: p}, nil, nil
	case *packets.Pingresp:
		return nil, nil, nil
	case *packets.Disconnect:
		return BrokerDisconnect{Disconnect: p}, nil, nil
	case *packets.Connack:
		return nil, nil, fmt.Errorf("%w: CONNACK on an established connection", ErrProtocol)
	case *packets.Auth:
		return nil, nil, fmt.Errorf("%w: AUTH without enhanced authentication", ErrProtocol)
	default:
		return nil, nil, fmt.Errorf("%w: %T is a packet only clients send", ErrProtocol, cp.Content)
	}
}

func (s *MqttState) complete(o *Outgoing, ack, reason byte, props *packets.Properties) PublishDone {
	id := o.Publish.PacketID
	if len(s.replayHold) > 0 {
		s.replayHold = slices.DeleteFunc(s.replayHold, func(h uint16) bool { return h == id })
	}
	s.unlinkSent(o)
	s.outgoing.Delete(id)
	s.freeID(id)
	return PublishDone{Publish: o.Publish, Tag: o.Tag, Ack: ack, ReasonCode: reason, Properties: props}
}

func (s *MqttState) incomingPublish(p *packets.Publish) (Event, packets.Packet, error) {
	if p.Properties != nil && p.Properties.TopicAlias != nil {
		return nil, nil, fmt.Errorf("%w: PUBLISH with a topic alias, which this client does not allow", ErrProtocol)
	}
	if p.Topic == "" {
		return nil, nil, fmt.Errorf("%w: PUBLISH with an empty topic", ErrProtocol)
	}
	switch p.QoS {
	case 0:
		return Delivered{Publish: p, Session: s.session}, nil, nil
	case 1:
		if p.PacketID == 0 {
			return nil, nil, fmt.Errorf("%w: QoS 1 PUBLISH with packet id 0", ErrProtocol)
		}
		if s.cfg.ManualAcks {
			if !s.unackedQoS1.Has(p.PacketID) {
				s.unackedQoS1.Set(p.PacketID, struct{}{})
			}
			return Delivered{Publish: p, Session: s.session}, nil, nil
		}
		// It may have awaited a manual ack under an earlier
		// configuration.
		s.unackedQoS1.Delete(p.PacketID)
		s.puback = packets.Puback{PacketID: p.PacketID}
		return Delivered{Publish: p, Session: s.session}, &s.puback, nil
	case 2:
		if p.PacketID == 0 {
			return nil, nil, fmt.Errorf("%w: QoS 2 PUBLISH with packet id 0", ErrProtocol)
		}
		sentRec, seen := s.incomingQoS2.Get(p.PacketID)
		if seen {
			// A duplicate of a message already delivered: never deliver
			// twice. Repeat PUBREC if it was sent.
			if !sentRec {
				if _, again := s.undelivered[p.PacketID]; again {
					// Delivered to a process that is gone.
					delete(s.undelivered, p.PacketID)
					if !s.cfg.ManualAcks {
						s.incomingQoS2.Set(p.PacketID, true)
						s.pubrec = packets.Pubrec{PacketID: p.PacketID}
						return Delivered{Publish: p, Session: s.session}, &s.pubrec, nil
					}
					return Delivered{Publish: p, Session: s.session}, nil, nil
				}
				return nil, nil, nil
			}
			s.pubrec = packets.Pubrec{PacketID: p.PacketID}
			return nil, &s.pubrec, nil
		}
		if s.cfg.ManualAcks {
			s.incomingQoS2.Set(p.PacketID, false)
			return Delivered{Publish: p, Session: s.session}, nil, nil
		}
		s.incomingQoS2.Set(p.PacketID, true)
		s.pubrec = packets.Pubrec{PacketID: p.PacketID}
		return Delivered{Publish: p, Session: s.session}, &s.pubrec, nil
	default:
		// Both QoS bits set: a malformed packet [MQTT-3.3.1-4].
		return nil, nil, fmt.Errorf("%w: PUBLISH with QoS %d", ErrProtocol, p.QoS)
	}
}

// Ack acknowledges an incoming message delivered in manual-ack mode: it
// returns the PUBACK (QoS 1) or PUBREC (QoS 2) to send. reason is the reason
// code (0 for success). Acks may come in any order.
//
// session is the Session of the message's Delivered event, or 0 to skip
// the check: an ack for a message of a broker session lost since fails
// with ErrStaleAck, and acknowledges nothing (its packet id may belong to
// a newer message by now).
func (s *MqttState) Ack(packetID uint16, qos byte, reason byte, session uint64) (packets.Packet, error) {
	if session != 0 && session != s.session {
		return nil, fmt.Errorf("%w: packet id %d", ErrStaleAck, packetID)
	}
	switch qos {
	case 1:
		if !s.unackedQoS1.Delete(packetID) {
			return nil, fmt.Errorf("%w: QoS 1 packet id %d", ErrUnknownPacketID, packetID)
		}
		s.puback = packets.Puback{PacketID: packetID, ReasonCode: reason}
		return &s.puback, nil
	case 2:
		sent, ok := s.incomingQoS2.Get(packetID)
		if !ok || sent {
			return nil, fmt.Errorf("%w: QoS 2 packet id %d", ErrUnknownPacketID, packetID)
		}
		delete(s.undelivered, packetID)
		if reason >= 0x80 {
			// A refused QoS 2 message ends its flow at PUBREC.
			s.incomingQoS2.Delete(packetID)
		} else {
			s.incomingQoS2.Set(packetID, true)
		}
		s.pubrec = packets.Pubrec{PacketID: packetID, ReasonCode: reason}
		return &s.pubrec, nil
	}
	return nil, fmt.Errorf("%w: QoS %d messages are not acknowledged", ErrUnknownPacketID, qos)
}
