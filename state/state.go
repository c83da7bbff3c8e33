// Package state holds an MQTT session as data, MqttState, and the pure
// transitions of the protocol: what to send for a request, what a packet
// from the broker means, what to replay after a reconnect.
//
// It does no I/O, reads no clock and starts no goroutines. The event loop
// feeds it packets and requests and writes out what it returns; a test can
// do the same with no network at all. The packet model is the one of
// github.com/eclipse/paho.golang/packets.
//
// An MqttState belongs to one event loop at a time and is not safe for
// concurrent use.
//
// A session outlives connections (Connected says what to replay) and
// processes: Save and Load write and read it in a versioned format
// (FORMAT.md), and a Store keeps it durable while it changes (AttachStore,
// then Commit once per event-loop iteration), in memory (MemoryStore) or
// in a file (package state/filestore).
package state

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Errors of the session's transitions.
var (
	// ErrProtocol: the broker sent something the protocol does not allow
	// at this point (an ack for an unknown packet id, a CONNACK after
	// connecting, a packet only clients may send, ...). The connection
	// must be closed.
	ErrProtocol = errors.New("protocol violation by the broker")
	// ErrNoPacketID: all 65,535 packet ids are in use.
	ErrNoPacketID = errors.New("no free packet id")
	// ErrUnknownPacketID: the user acknowledged a message that is not
	// waiting for an acknowledgement.
	ErrUnknownPacketID = errors.New("no message with this packet id awaits acknowledgement")
	// ErrNotSupported: the broker said in CONNACK that it does not support
	// what the request needs (e.g. retained messages, this QoS).
	ErrNotSupported = errors.New("not supported by the broker")
)

// Stage is where an outgoing QoS 1 or 2 publish is in its flow.
type Stage uint8

const (
	// AwaitingAck: PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC
	// (QoS 2).
	AwaitingAck Stage = iota
	// AwaitingComplete: QoS 2 only; PUBREC received and PUBREL sent;
	// waiting for PUBCOMP.
	AwaitingComplete
)

// Pending is a request accepted into the session and not yet sent: Packet
// is a *packets.Publish, *packets.Subscribe or *packets.Unsubscribe; Tag is
// whatever the caller wants back when the request completes (the event
// loop keeps the user's request there).
//
// Tag lives in memory only: Save and the stores do not keep it, and a
// session rebuilt by Load or a Store has nil tags, except that SUBSCRIBE
// requests queued by Connected to re-establish subscriptions keep their
// Resubscribe tag.
type Pending struct {
	Packet packets.Packet
	Tag    any
	key    int64 // position in the queue, also the durable record's key
}

// Resubscribe is the Tag of the SUBSCRIBE requests that Connected queues
// to re-establish the session's subscriptions when the broker has lost
// them. It tells them apart from the user's requests:
//
//	if _, ok := p.Tag.(state.Resubscribe); ok { ... }
type Resubscribe struct{}

// Outgoing is a QoS 1 or 2 publish in flight. Tag is not saved (see
// Pending).
type Outgoing struct {
	Publish *packets.Publish
	Stage   Stage
	Tag     any
	seq     uint64 // send order, for replay
	// topic is the publish's topic when it was first sent, to restore it
	// if the packet was rewritten to use a topic alias.
	topic string

	// The list of publishes passed to MarkSent on this connection,
	// ordered by sentAt.
	sentAt     time.Time
	prev, next *Outgoing
	listed     bool
}

// Config is what the session needs from the user's options.
type Config struct {
	// MaxInflight caps QoS 1 and 2 publishes awaiting their final ack;
	// the window used is the smaller of this and the broker's Receive
	// Maximum. 0 means 65,535.
	MaxInflight int
	// ManualAcks: incoming QoS 1 and 2 messages are acknowledged only when
	// the user calls Ack, in any order.
	ManualAcks bool
}

// Limits are what the broker announced in its CONNACK.
type Limits struct {
	ReceiveMaximum    uint16 // QoS 1/2 publishes the broker accepts in flight (65,535 when absent)
	MaximumPacketSize uint32 // largest packet the broker accepts (0: no limit)
	TopicAliasMaximum uint16 // outgoing topic aliases allowed (0: none)
	MaximumQoS        byte   // highest QoS the broker supports (2 when absent)
	RetainAvailable   bool   // whether the broker supports retained messages
}

// DefaultLimits are the limits in force before a CONNACK says otherwise.
var DefaultLimits = Limits{ReceiveMaximum: 65535, MaximumQoS: 2, RetainAvailable: true}

// MqttState is an MQTT session on the client side: packet ids in use,
// publishes in flight with their stage, incoming QoS 2 ids awaiting PUBREL,
// requests accepted but not sent, and the active subscriptions. Hand it to
// the next connection to continue the session.
type MqttState struct {
	cfg      Config
	limits   Limits
	identity Identity

	nextID uint16
	seq    uint64
	inUse  map[uint16]struct{}

	outgoing      map[uint16]*Outgoing
	subscribing   map[uint16]sentRequest
	unsubscribing map[uint16]sentRequest

	// incomingQoS2 holds ids of QoS 2 publishes received and not yet
	// released; the value says whether PUBREC was sent (false only while
	// a manual ack is outstanding).
	incomingQoS2 map[uint16]bool
	// unackedQoS1 holds ids of QoS 1 publishes delivered to the user in
	// manual-ack mode and not yet acknowledged.
	unackedQoS1 map[uint16]struct{}

	// undelivered holds the incoming QoS 2 ids awaiting a manual ack
	// that a rebuilt session inherited: the process they were delivered
	// to is gone, so the broker's resend is delivered again.
	undelivered map[uint16]struct{}

	subscriptions map[string]subscription

	queue []Pending
	head  int
	// Queue positions: keys of queued requests are in [qFront, qBack),
	// increasing from head to tail.
	qFront, qBack int64

	// Publishes in flight passed to MarkSent, oldest first.
	sentHead, sentTail *Outgoing

	// trk records changes for the attached store; nil without one.
	trk *tracker

	// scratch acks, reused: a reply is valid until the next transition.
	puback  packets.Puback
	pubrec  packets.Pubrec
	pubrel  packets.Pubrel
	pubcomp packets.Pubcomp

	// replayHold are ids of in-flight publishes not yet replayed on this
	// connection because the broker's Receive Maximum is smaller than
	// what is in flight (per connection, not saved).
	replayHold []uint16
}

// New returns an empty session.
func New(cfg Config) *MqttState {
	return &MqttState{
		cfg:           cfg,
		limits:        DefaultLimits,
		inUse:         make(map[uint16]struct{}),
		outgoing:      make(map[uint16]*Outgoing),
		subscribing:   make(map[uint16]sentRequest),
		unsubscribing: make(map[uint16]sentRequest),
		incomingQoS2:  make(map[uint16]bool),
		unackedQoS1:   make(map[uint16]struct{}),
		subscriptions: make(map[string]subscription),
	}
}

// subscription is an active subscription: its options and the
// subscription identifier it was made with (0: none).
type subscription struct {
	opts packets.SubOptions
	id   int
}

// Identity names the session: the broker (or cluster) it lives on and the
// client id. A session, its saved files and its store belong to one
// identity; AttachStore refuses a store that holds another one.
type Identity struct {
	// Server names the broker, e.g. its URL. Keep it stable across the
	// addresses of one broker or cluster.
	Server string
	// ClientID is the MQTT client identifier.
	ClientID string
}

// Identity returns the session's identity (the zero Identity until
// SetIdentity).
func (s *MqttState) Identity() Identity { return s.identity }

// SetIdentity sets the session's identity. With a store attached, the
// store follows at the next Commit.
func (s *MqttState) SetIdentity(id Identity) {
	if id != s.identity {
		s.identity = id
		s.touchMeta()
	}
}

// SetConfig replaces the session's configuration, e.g. when a saved
// session continues under new options.
func (s *MqttState) SetConfig(cfg Config) { s.cfg = cfg }

// Limits returns the broker limits in force.
func (s *MqttState) Limits() Limits { return s.limits }

// Window returns how many QoS 1 and 2 publishes may be in flight.
func (s *MqttState) Window() int {
	w := int(s.limits.ReceiveMaximum)
	if w == 0 {
		w = 65535
	}
	if s.cfg.MaxInflight > 0 && s.cfg.MaxInflight < w {
		w = s.cfg.MaxInflight
	}
	return w
}

// InFlight returns the number of QoS 1 and 2 publishes awaiting their final
// ack.
func (s *MqttState) InFlight() int { return len(s.outgoing) }

// Queued returns the number of requests accepted and not yet sent.
func (s *MqttState) Queued() int { return len(s.queue) - s.head }

// Outstanding returns the number of sent requests awaiting an answer from
// the broker: publishes in flight, subscribes and unsubscribes.
func (s *MqttState) Outstanding() int {
	return len(s.outgoing) + len(s.subscribing) + len(s.unsubscribing)
}

// Idle reports whether nothing is queued or awaiting an answer: every
// request handed to the session has completed.
func (s *MqttState) Idle() bool { return s.Queued() == 0 && s.Outstanding() == 0 }

// AwaitingRelease returns the number of incoming QoS 2 ids awaiting PUBREL.
func (s *MqttState) AwaitingRelease() int { return len(s.incomingQoS2) }

// InFlightPublishes returns the publishes in flight in the order they were
// first sent.
func (s *MqttState) InFlightPublishes() []Outgoing {
	out := make([]Outgoing, 0, len(s.outgoing))
	for _, o := range s.outgoing {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b Outgoing) int { return cmpUint64(a.seq, b.seq) })
	return out
}

// QueuedRequests returns the requests accepted and not yet sent, oldest
// first.
func (s *MqttState) QueuedRequests() []Pending { return slices.Clone(s.queue[s.head:]) }

// Subscriptions returns the active subscriptions: topic filter → options.
func (s *MqttState) Subscriptions() map[string]packets.SubOptions {
	m := make(map[string]packets.SubOptions, len(s.subscriptions))
	for k, v := range s.subscriptions {
		m[k] = v.opts
	}
	return m
}

// SubscriptionIdentifier returns the subscription identifier an active
// subscription was made with (0: none, or no such subscription).
// Re-subscribing after a lost session uses it again.
func (s *MqttState) SubscriptionIdentifier(filter string) int {
	return s.subscriptions[filter].id
}

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

func (s *MqttState) allocID() (uint16, error) {
	if len(s.inUse)+len(s.incomingQoS2)+len(s.unackedQoS1) >= 65535 {
		return 0, ErrNoPacketID
	}
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.inUse[s.nextID]; used {
			continue
		}
		// The two directions have separate id spaces, but some brokers
		// (mochi v2.7.9) keep one in-flight table per client: avoid the
		// ids the broker is using towards us, so they never collide.
		if _, theirs := s.incomingQoS2[s.nextID]; theirs {
			continue
		}
		if _, theirs := s.unackedQoS1[s.nextID]; theirs {
			continue
		}
		s.touchMeta()
		s.inUse[s.nextID] = struct{}{}
		return s.nextID, nil
	}
}

func (s *MqttState) freeID(id uint16) { delete(s.inUse, id) }

// Events that HandleIncoming reports.
type (
	// Delivered: an application message arrived and is new (not a
	// duplicate of a QoS 2 message already delivered). With ManualAcks,
	// QoS 1 and 2 messages wait for Ack.
	Delivered struct{ Publish *packets.Publish }
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
// (one of the event types above, or nil) and the packet to send in reply
// (or nil). A reply is valid until the next call into the session. An
// error wrapping ErrProtocol means the connection must be closed.
func (s *MqttState) HandleIncoming(cp *packets.ControlPacket) (event any, reply packets.Packet, err error) {
	switch p := cp.Content.(type) {
	case *packets.Publish:
		return s.incomingPublish(p)
	case *packets.Puback:
		o, ok := s.outgoing[p.PacketID]
		if !ok || o.Publish.QoS != 1 {
			return nil, nil, fmt.Errorf("%w: PUBACK for packet id %d, which has no QoS 1 publish in flight", ErrProtocol, p.PacketID)
		}
		return s.complete(o, packets.PUBACK, p.ReasonCode, p.Properties), nil, nil
	case *packets.Pubrec:
		o, ok := s.outgoing[p.PacketID]
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
			s.touchOut(p.PacketID)
			o.Stage = AwaitingComplete
		}
		s.pubrel = packets.Pubrel{PacketID: p.PacketID}
		return nil, &s.pubrel, nil
	case *packets.Pubcomp:
		o, ok := s.outgoing[p.PacketID]
		if !ok || o.Stage != AwaitingComplete {
			return nil, nil, fmt.Errorf("%w: PUBCOMP for packet id %d, which awaits no PUBCOMP", ErrProtocol, p.PacketID)
		}
		return s.complete(o, packets.PUBCOMP, p.ReasonCode, p.Properties), nil, nil
	case *packets.Pubrel:
		sentRec, ok := s.incomingQoS2[p.PacketID]
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
		s.touchIncomingQoS2(p.PacketID)
		delete(s.incomingQoS2, p.PacketID)
		return nil, &s.pubcomp, nil
	case *packets.Suback:
		pend, ok := s.subscribing[p.PacketID]
		if !ok {
			return nil, nil, fmt.Errorf("%w: SUBACK for unknown packet id %d", ErrProtocol, p.PacketID)
		}
		sub := pend.Packet.(*packets.Subscribe)
		if len(p.Reasons) != len(sub.Subscriptions) {
			return nil, nil, fmt.Errorf("%w: SUBACK for packet id %d has %d reason codes for %d filters", ErrProtocol, p.PacketID, len(p.Reasons), len(sub.Subscriptions))
		}
		s.touchSubscribing(p.PacketID)
		delete(s.subscribing, p.PacketID)
		s.freeID(p.PacketID)
		subID := 0
		if sub.Properties != nil && sub.Properties.SubscriptionIdentifier != nil {
			subID = *sub.Properties.SubscriptionIdentifier
		}
		_, resub := pend.Tag.(Resubscribe)
		for i, opt := range sub.Subscriptions {
			switch {
			case p.Reasons[i] < 0x80:
				s.touchSubscription(opt.Topic)
				s.subscriptions[opt.Topic] = subscription{opts: opt, id: subID}
			case resub:
				// The broker lost the session and refuses the
				// subscription now: it is no longer active.
				if _, ok := s.subscriptions[opt.Topic]; ok {
					s.touchSubscription(opt.Topic)
					delete(s.subscriptions, opt.Topic)
				}
			}
		}
		return SubscribeDone{Subscribe: sub, Tag: pend.Tag, Suback: p}, nil, nil
	case *packets.Unsuback:
		pend, ok := s.unsubscribing[p.PacketID]
		if !ok {
			return nil, nil, fmt.Errorf("%w: UNSUBACK for unknown packet id %d", ErrProtocol, p.PacketID)
		}
		unsub := pend.Packet.(*packets.Unsubscribe)
		if len(p.Reasons) != 0 && len(p.Reasons) != len(unsub.Topics) {
			return nil, nil, fmt.Errorf("%w: UNSUBACK for packet id %d has %d reason codes for %d topics", ErrProtocol, p.PacketID, len(p.Reasons), len(unsub.Topics))
		}
		s.touchUnsubscribing(p.PacketID)
		delete(s.unsubscribing, p.PacketID)
		s.freeID(p.PacketID)
		for i, t := range unsub.Topics {
			// A refused unsubscribe (reason ≥ 0x80) leaves the
			// subscription in place.
			if i < len(p.Reasons) && p.Reasons[i] >= 0x80 {
				continue
			}
			if _, ok := s.subscriptions[t]; ok {
				s.touchSubscription(t)
				delete(s.subscriptions, t)
			}
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
	s.touchOut(id)
	s.unlinkSent(o)
	delete(s.outgoing, id)
	s.freeID(id)
	return PublishDone{Publish: o.Publish, Tag: o.Tag, Ack: ack, ReasonCode: reason, Properties: props}
}

func (s *MqttState) incomingPublish(p *packets.Publish) (any, packets.Packet, error) {
	if p.Properties != nil && p.Properties.TopicAlias != nil {
		return nil, nil, fmt.Errorf("%w: PUBLISH with a topic alias, which this client does not allow", ErrProtocol)
	}
	if p.Topic == "" {
		return nil, nil, fmt.Errorf("%w: PUBLISH with an empty topic", ErrProtocol)
	}
	switch p.QoS {
	case 0:
		return Delivered{Publish: p}, nil, nil
	case 1:
		if p.PacketID == 0 {
			return nil, nil, fmt.Errorf("%w: QoS 1 PUBLISH with packet id 0", ErrProtocol)
		}
		if s.cfg.ManualAcks {
			if _, ok := s.unackedQoS1[p.PacketID]; !ok {
				s.touchUnackedQoS1(p.PacketID)
				s.unackedQoS1[p.PacketID] = struct{}{}
			}
			return Delivered{Publish: p}, nil, nil
		}
		if _, ok := s.unackedQoS1[p.PacketID]; ok {
			// Awaited a manual ack under an earlier configuration.
			s.touchUnackedQoS1(p.PacketID)
			delete(s.unackedQoS1, p.PacketID)
		}
		s.puback = packets.Puback{PacketID: p.PacketID}
		return Delivered{Publish: p}, &s.puback, nil
	case 2:
		if p.PacketID == 0 {
			return nil, nil, fmt.Errorf("%w: QoS 2 PUBLISH with packet id 0", ErrProtocol)
		}
		sentRec, seen := s.incomingQoS2[p.PacketID]
		if seen {
			// A duplicate of a message already delivered: never deliver
			// twice. Repeat PUBREC if it was sent.
			if !sentRec {
				if _, again := s.undelivered[p.PacketID]; again {
					// Delivered to a process that is gone.
					delete(s.undelivered, p.PacketID)
					if !s.cfg.ManualAcks {
						s.touchIncomingQoS2(p.PacketID)
						s.incomingQoS2[p.PacketID] = true
						s.pubrec = packets.Pubrec{PacketID: p.PacketID}
						return Delivered{Publish: p}, &s.pubrec, nil
					}
					return Delivered{Publish: p}, nil, nil
				}
				return nil, nil, nil
			}
			s.pubrec = packets.Pubrec{PacketID: p.PacketID}
			return nil, &s.pubrec, nil
		}
		s.touchIncomingQoS2(p.PacketID)
		if s.cfg.ManualAcks {
			s.incomingQoS2[p.PacketID] = false
			return Delivered{Publish: p}, nil, nil
		}
		s.incomingQoS2[p.PacketID] = true
		s.pubrec = packets.Pubrec{PacketID: p.PacketID}
		return Delivered{Publish: p}, &s.pubrec, nil
	default:
		// Both QoS bits set: a malformed packet [MQTT-3.3.1-4].
		return nil, nil, fmt.Errorf("%w: PUBLISH with QoS %d", ErrProtocol, p.QoS)
	}
}

// Ack acknowledges an incoming message delivered in manual-ack mode: it
// returns the PUBACK (QoS 1) or PUBREC (QoS 2) to send. reason is the reason
// code (0 for success). Acks may come in any order.
func (s *MqttState) Ack(packetID uint16, qos byte, reason byte) (packets.Packet, error) {
	switch qos {
	case 1:
		if _, ok := s.unackedQoS1[packetID]; !ok {
			return nil, fmt.Errorf("%w: QoS 1 packet id %d", ErrUnknownPacketID, packetID)
		}
		s.touchUnackedQoS1(packetID)
		delete(s.unackedQoS1, packetID)
		s.puback = packets.Puback{PacketID: packetID, ReasonCode: reason}
		return &s.puback, nil
	case 2:
		sent, ok := s.incomingQoS2[packetID]
		if !ok || sent {
			return nil, fmt.Errorf("%w: QoS 2 packet id %d", ErrUnknownPacketID, packetID)
		}
		s.touchIncomingQoS2(packetID)
		delete(s.undelivered, packetID)
		if reason >= 0x80 {
			// A refused QoS 2 message ends its flow at PUBREC.
			delete(s.incomingQoS2, packetID)
		} else {
			s.incomingQoS2[packetID] = true
		}
		s.pubrec = packets.Pubrec{PacketID: packetID, ReasonCode: reason}
		return &s.pubrec, nil
	}
	return nil, fmt.Errorf("%w: QoS %d messages are not acknowledged", ErrUnknownPacketID, qos)
}

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
func (s *MqttState) Connected(ack *packets.Connack, resubscribe bool) Resumed {
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
	for i := s.head; i < len(s.queue); i++ {
		if pub, ok := s.queue[i].Packet.(*packets.Publish); ok && stripAlias(pub, "") {
			s.touchQueue(s.queue[i], true, true)
		}
	}

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
				s.touchOut(id)
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

	for id := range s.incomingQoS2 {
		s.touchIncomingQoS2(id)
	}
	for id := range s.unackedQoS1 {
		s.touchUnackedQoS1(id)
	}
	clear(s.incomingQoS2)
	clear(s.unackedQoS1)
	clear(s.undelivered)
	var unanswered []sentRequest
	for _, o := range inflight {
		id := o.Publish.PacketID
		s.touchOut(id)
		delete(s.outgoing, id)
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
const maxPacketSize = 1 + 4 + 268435455

// resubscribes builds SUBSCRIBE requests for every active subscription:
// one per subscription identifier, split where a packet would exceed the
// broker's maximum packet size; filters sorted within each.
func (s *MqttState) resubscribes() ([]Pending, []string) {
	if len(s.subscriptions) == 0 {
		return nil, nil
	}
	all := make([]subscription, 0, len(s.subscriptions))
	for _, sb := range s.subscriptions {
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
				props = 1 + vbiLen(sb.id)
			}
			rem = 2 + vbiLen(props) + props
		}
		cur.Subscriptions = append(cur.Subscriptions, sb.opts)
		rem += size
		filters = append(filters, sb.opts.Topic)
	}
	out = append(out, Pending{Packet: cur, Tag: Resubscribe{}})
	return out, filters
}

// packetSize is the size of a packet with this remaining length.
func packetSize(remaining int) int { return 1 + vbiLen(remaining) + remaining }

// vbiLen is the size of n as an MQTT variable byte integer.
func vbiLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

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
		if o = s.outgoing[pk.PacketID]; o == nil || o.Publish != pk {
			return
		}
	case *packets.Pubrel:
		if o = s.outgoing[pk.PacketID]; o == nil || o.Stage != AwaitingComplete {
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

// sentRequest is a SUBSCRIBE or UNSUBSCRIBE awaiting its ack, with its
// place in the send order (shared with publishes).
type sentRequest struct {
	Pending
	seq uint64
}

// takeUnanswered moves sent but unanswered (un)subscribes out of flight,
// appending them to dst.
func (s *MqttState) takeUnanswered(dst []sentRequest) []sentRequest {
	for id, r := range s.subscribing {
		s.touchSubscribing(id)
		dst = append(dst, r)
		s.freeID(id)
	}
	for id, r := range s.unsubscribing {
		s.touchUnsubscribing(id)
		dst = append(dst, r)
		s.freeID(id)
	}
	clear(s.subscribing)
	clear(s.unsubscribing)
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

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
