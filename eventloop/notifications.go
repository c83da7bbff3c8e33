package eventloop

import (
	"time"
)

// Notification is what Next returns: Connected, Message, Published,
// Subscribed, Unsubscribed, RequestFailed, Disconnected, Reconnecting,
// Dropped, QueueFull, Reauthenticated or PathChanged.
type Notification interface{ isNotification() }

// Connected: the broker accepted the connection (CONNACK with success).
type Connected struct {
	Server    string // the server URL connected to (without user info)
	Transport string // "tcp", "tls", "ws", "wss", "quic" or "unix"
	// ProtocolVersion is the MQTT version spoken: 5, or 4 for 3.1.1.
	ProtocolVersion byte
	SessionPresent  bool // the broker kept a session for this client id
	// AssignedClientID is the client id the broker assigned when
	// Options.ClientID was empty.
	AssignedClientID string
	KeepAlive        time.Duration // the keepalive in force (the broker may override)
	ReceiveMaximum   uint16        // QoS 1/2 publishes the broker accepts in flight
	// MaximumPacketSize is the largest packet the broker accepts (0: no
	// limit announced).
	MaximumPacketSize uint32
	MaximumQoS        byte
	RetainAvailable   bool
	// TopicAliasMaximum is the highest topic alias the broker accepts in
	// publishes from the client (0: none); see Options.OutgoingTopicAliases.
	TopicAliasMaximum uint16
	// WildcardSubscriptionAvailable, SharedSubscriptionAvailable and
	// SubscriptionIdentifiersAvailable say whether the broker supports
	// wildcard filters, shared subscriptions ($share/...) and subscription
	// identifiers. Each is true unless the broker said otherwise (an MQTT
	// 3.1.1 broker cannot say, so they are true there).
	WildcardSubscriptionAvailable    bool
	SharedSubscriptionAvailable      bool
	SubscriptionIdentifiersAvailable bool
	// ServerKeepAlive: the broker imposed KeepAlive (MQTT 5 Server Keep
	// Alive) instead of accepting Options.KeepAlive.
	ServerKeepAlive bool
	// SessionExpiry is the session expiry interval in force:
	// Options.SessionExpiry, unless the broker set another in CONNACK.
	SessionExpiry time.Duration
	// ResponseInformation is what the broker offers as the basis of
	// response topics (MQTT 5 Response Information), sent only when
	// Options.RequestResponseInformation asks for it and the broker
	// supports it; "" otherwise.
	ResponseInformation string
	// ServerReference names another server the client should use instead,
	// or as well (MQTT 5 Server Reference; its format is the broker's).
	ServerReference string
	// ReasonString and UserProperties are what the broker added to its
	// CONNACK for diagnostics or for the application (MQTT 5).
	ReasonString   string
	UserProperties UserProperties
	// Replayed counts packets resent because the broker kept the session;
	// Requeued counts requests sent again as new because it did not.
	Replayed, Requeued int
	// Resubscribed lists the filters being subscribed again because the
	// broker lost the session (Options.NoResubscribe turns this off); their
	// SUBACKs arrive as Subscribed with Resubscribe set.
	Resubscribed []string
	// Used0RTT: CONNECT travelled in QUIC 0-RTT data and the server
	// accepted it (Options.QUIC0RTT).
	Used0RTT bool
}

// Message is an application message from the broker. With
// Options.ManualAcks, QoS 1 and 2 messages must be acknowledged with
// m.Ack() (sent as a request) or EventLoop.Ack.
type Message struct {
	Topic      string
	Payload    []byte // owned by the receiver: safe to keep
	QoS        byte
	Retain     bool
	Duplicate  bool
	PacketID   uint16
	Properties *Properties // nil when the message had none

	session uint64 // the broker session it came from, checked by Ack
}

// Ack returns the request acknowledging m (for Options.ManualAcks). It
// remembers the broker session m came from: if the broker lost that
// session since, the ack is refused (ErrStaleAck) instead of acknowledging
// a newer message that reuses the packet id.
func (m Message) Ack() Ack { return Ack{PacketID: m.PacketID, QoS: m.QoS, session: m.session} }

// Published: a QoS 1 or 2 publish completed (PUBACK, PUBCOMP, or PUBREC
// with a failure code), or, with Options.NotifyQoS0, a QoS 0 publish was
// written. Request is the Publish as the user sent it.
type Published struct {
	Request Publish
	// ReasonCode is the code of the final ack (PUBACK for QoS 1, PUBCOMP
	// for QoS 2, PUBREC when it refused the message).
	ReasonCode byte
	// Err is non-nil when the broker refused the message (a
	// *ReasonCodeError, reason code ≥ 0x80).
	Err error
}

// Subscribed: the broker answered a Subscribe. ReasonCodes has one entry
// per filter: the granted QoS (0-2), or a failure code ≥ 0x80.
type Subscribed struct {
	Request     Subscribe
	ReasonCodes []byte
	// Resubscribe: the loop re-established this subscription after the
	// broker lost the session; Request is rebuilt from the packet.
	Resubscribe bool
}

// Err returns a *ReasonCodeError for the first refused filter, or nil when
// every filter was granted.
func (s Subscribed) Err() error { return firstFailure("SUBACK", s.ReasonCodes) }

// Unsubscribed: the broker answered an Unsubscribe. ReasonCodes has one
// entry per topic (MQTT 5).
type Unsubscribed struct {
	Request     Unsubscribe
	ReasonCodes []byte
}

// Err returns a *ReasonCodeError for the first failed topic, or nil.
func (u Unsubscribed) Err() error { return firstFailure("UNSUBACK", u.ReasonCodes) }

// RequestFailed: a request was refused before anything was sent (invalid
// topic or QoS, too large for the broker, unknown packet id in an Ack, ...),
// or a QoS 1/2 publish was given up as poisoned (ErrPoisonMessage: the
// broker ended the connection on it with a DISCONNECT blaming a packet
// PoisonDrops times in a row). The loop
// goes on.
type RequestFailed struct {
	Request Request
	Err     error
}

// Disconnected: the connection ended. Err says why (ErrDisconnected,
// ErrStopped, ErrKeepAliveTimeout, a *ReasonCodeError for a broker
// DISCONNECT, a network error, ...).
type Disconnected struct {
	Err error
}

func (Connected) isNotification()     {}
func (Message) isNotification()       {}
func (Published) isNotification()     {}
func (Subscribed) isNotification()    {}
func (Unsubscribed) isNotification()  {}
func (RequestFailed) isNotification() {}
func (Disconnected) isNotification()  {}

func firstFailure(packet string, codes []byte) error {
	for _, c := range codes {
		if c >= 0x80 {
			return &ReasonCodeError{Packet: packet, Code: c}
		}
	}
	return nil
}

// Reconnecting: the connection failed or was lost and the loop will try
// again after Delay (Options.Reconnect). Attempt counts the failures since
// the last successful connection; Err is the last one.
type Reconnecting struct {
	Attempt int
	Delay   time.Duration
	Err     error
}

// Dropped: a request was discarded, for Reason:
//
//   - ErrOffline: a QoS 0 publish while the loop was offline, with
//     Options.DropQoS0WhileOffline;
//   - ErrSpoolFull: a request taken while the offline spool's byte budget
//     was used up (Options.SpoolBytes);
//   - ErrMessageExpired: a publish whose MQTT 5 Message Expiry ran out
//     while it waited in the queue (a late one still in time is sent with
//     what remains of its interval, as MQTT 5 says).
//
// Nothing else is dropped.
type Dropped struct {
	Request Request
	Reason  error
}

// QueueFull: Options.MaxQueued requests wait in the session, taken from
// the channel and not yet sent (the loop is offline, paused or throttled,
// or the broker's receive window is full), so the loop has stopped reading
// the requests channel: senders on it block, or find it full. Nothing is
// dropped; the loop reads the channel again as soon as a request is sent.
// It is reported once, and again only after the queue has emptied;
// EventLoop.Status tells how many requests wait at any moment. A loop with
// an offline spool (Options.SpoolBytes) does not stop reading: requests
// beyond MaxQueued go to the store, and those beyond its budget are
// Dropped with ErrSpoolFull.
type QueueFull struct {
	Queued int // requests waiting when the queue filled
}

func (Reconnecting) isNotification() {}
func (Dropped) isNotification()      {}
func (QueueFull) isNotification()    {}
