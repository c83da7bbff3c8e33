package state

import (
	"errors"
	"slices"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/state/internal/tracked"
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
	// ErrStaleAck: the user acknowledged a message delivered in a broker
	// session that has been lost since (a CONNACK without session
	// present came in between). The broker has forgotten that message;
	// its packet id may now belong to a newer one, which the ack must not
	// acknowledge.
	ErrStaleAck = errors.New("ack for a message of a lost broker session")
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
	// Expires is when a PUBLISH with a Message Expiry Interval expires
	// while it waits (zero: never). EnqueueAt sets it; NextToSendAt drops
	// the publish once it is due and sends it with what remains of its
	// interval before then. Stores keep it.
	Expires time.Time
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

	// What a store keeps lives in tracked containers: every change is
	// recorded for the next Commit (store.go).
	outgoing      tracked.Map[uint16, *Outgoing]
	subscribing   tracked.Map[uint16, sentRequest]
	unsubscribing tracked.Map[uint16, sentRequest]

	// incomingQoS2 holds ids of QoS 2 publishes received and not yet
	// released; the value says whether PUBREC was sent (false only while
	// a manual ack is outstanding).
	incomingQoS2 tracked.Map[uint16, bool]
	// unackedQoS1 holds ids of QoS 1 publishes delivered to the user in
	// manual-ack mode and not yet acknowledged.
	unackedQoS1 tracked.Map[uint16, struct{}]

	subscriptions tracked.Map[string, subscription]

	// queue holds the requests accepted and not yet sent; an entry's key
	// is its position, also its durable record's key.
	queue tracked.Queue[Pending]
	// spool: the queue's requests beyond its window in memory, kept in
	// the store only (spool.go).
	spool spool

	// undelivered holds the incoming QoS 2 ids awaiting a manual ack
	// that a rebuilt session inherited: the process they were delivered
	// to is gone, so the broker's resend is delivered again.
	undelivered map[uint16]struct{}

	// Publishes in flight passed to MarkSent, oldest first.
	sentHead, sentTail *Outgoing

	// trk writes changes to the attached store; nil without one.
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

	// session numbers the broker sessions this MqttState has seen: 0
	// before the first CONNACK, then +1 at the first and at every CONNACK
	// without session present (in memory only). Delivered carries it;
	// Ack refuses an ack from an earlier one.
	session uint64
}

// New returns an empty session.
func New(cfg Config) *MqttState {
	return &MqttState{
		cfg:    cfg,
		limits: DefaultLimits,
		inUse:  make(map[uint16]struct{}),
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
	// Server names the broker or cluster the session lives on. The event
	// loop writes the normalised addresses of its servers, or the
	// session's name (eventloop.Options.SessionName); this package only
	// compares it.
	Server string
	// ClientID is the MQTT client identifier.
	ClientID string
}

// Identity returns the session's identity (the zero Identity until
// SetIdentity).
func (s *MqttState) Identity() Identity { return s.identity }

// SetIdentity sets the session's identity. With a store attached, the
// store follows at the next Commit.
func (s *MqttState) SetIdentity(id Identity) { s.identity = id }

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
func (s *MqttState) InFlight() int { return s.outgoing.Len() }

// Queued returns the number of requests accepted and not yet sent,
// those spooled to the store included (see SetSpool).
func (s *MqttState) Queued() int { return s.queue.Len() + s.spool.n }

// Outstanding returns the number of sent requests awaiting an answer from
// the broker: publishes in flight, subscribes and unsubscribes.
func (s *MqttState) Outstanding() int {
	return s.outgoing.Len() + s.subscribing.Len() + s.unsubscribing.Len()
}

// Idle reports whether nothing is queued or awaiting an answer: every
// request handed to the session has completed.
func (s *MqttState) Idle() bool { return s.Queued() == 0 && s.Outstanding() == 0 }

// AwaitingRelease returns the number of incoming QoS 2 ids awaiting PUBREL.
func (s *MqttState) AwaitingRelease() int { return s.incomingQoS2.Len() }

// InFlightPublishes returns the publishes in flight in the order they were
// first sent.
func (s *MqttState) InFlightPublishes() []Outgoing {
	out := make([]Outgoing, 0, s.outgoing.Len())
	for _, o := range s.outgoing.All() {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b Outgoing) int { return cmpUint64(a.seq, b.seq) })
	return out
}

// QueuedRequests returns the requests accepted and not yet sent, oldest
// first: those in memory, not those spooled to the store beyond them
// (Spooled counts them).
func (s *MqttState) QueuedRequests() []Pending {
	ps := make([]Pending, 0, s.queue.Len())
	for _, p := range s.queue.All() {
		ps = append(ps, p)
	}
	return ps
}

// Subscriptions returns the active subscriptions: topic filter → options.
func (s *MqttState) Subscriptions() map[string]packets.SubOptions {
	m := make(map[string]packets.SubOptions, s.subscriptions.Len())
	for k, v := range s.subscriptions.All() {
		m[k] = v.opts
	}
	return m
}

// SubscriptionIdentifier returns the subscription identifier an active
// subscription was made with (0: none, or no such subscription).
// Re-subscribing after a lost session uses it again.
func (s *MqttState) SubscriptionIdentifier(filter string) int {
	sb, _ := s.subscriptions.Get(filter)
	return sb.id
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
