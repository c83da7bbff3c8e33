package eventloop

import (
	"time"
)

// Request is something the user asks the loop to do: Publish, Subscribe,
// Unsubscribe, Ack, Disconnect, Shutdown, Pause, Resume, Throttle or
// Reauthenticate. Send
// requests on the channel given to Run.
type Request interface{ isRequest() }

// Publish sends an application message. With QoS 1 or 2 the loop reports
// the broker's final acknowledgement as a Published notification carrying
// this value, Tag included, so it can be correlated.
type Publish struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Properties *Properties // MQTT 5 publish properties, optional
	// Tag is yours: the loop hands it back unchanged in Published and
	// RequestFailed.
	Tag any
}

// Subscribe subscribes to one or more topic filters in one SUBSCRIBE. The
// SUBACK is reported as a Subscribed notification.
type Subscribe struct {
	Filters []Filter
	// SubscriptionID, if non-zero, is the MQTT 5 Subscription Identifier:
	// messages matching these filters carry it.
	SubscriptionID int
	UserProperties UserProperties // MQTT 5
	Tag            any
}

// Filter is one topic filter of a Subscribe with its options.
type Filter struct {
	Topic             string
	QoS               byte // maximum QoS to receive messages at
	NoLocal           bool // do not receive own publishes
	RetainAsPublished bool // keep the retain flag as published
	RetainHandling    byte // 0 send retained on subscribe, 1 only if new, 2 never
}

// Unsubscribe removes topic filters. The UNSUBACK is reported as an
// Unsubscribed notification.
type Unsubscribe struct {
	Topics         []string
	UserProperties UserProperties // MQTT 5
	Tag            any
}

// Ack acknowledges an incoming QoS 1 or 2 message when Options.ManualAcks
// is set. Make one with Message.Ack. Acks may be sent in any order. The
// loop reads acks even while its outgoing window is full; to ack from
// another goroutine without the channel (which may be full), call
// EventLoop.Ack or EventLoop.SendAck. An Ack for a QoS 0 message does
// nothing.
type Ack struct {
	PacketID   uint16
	QoS        byte
	ReasonCode byte // 0 (success) unless the message is refused (≥ 0x80)

	session uint64 // set by Message.Ack; 0: not checked
}

// Disconnect sends DISCONNECT with ReasonCode (0: normal; 0x04: ask the
// broker to publish the will message), closes the connection and ends the
// run with ErrDisconnected. Requests still queued or in flight stay in the
// session (EventLoop.State).
type Disconnect struct {
	ReasonCode byte
	// SessionExpiry, if not nil, changes the session expiry interval on
	// DISCONNECT (rounded up to whole seconds, at most 2^32-1 s). MQTT 5
	// allows a non-zero one only when Options.SessionExpiry was non-zero;
	// otherwise the request fails (RequestFailed, ErrInvalidRequest) and
	// the connection stays up. ReasonCode must be one a client may send
	// (0x00, 0x04, 0x80-0x83, 0x90, 0x93-0x99).
	SessionExpiry *time.Duration
}

// Pause stops sending queued publishes, subscribes and unsubscribes until
// Resume; keepalive, incoming messages and acks go on. While paused the
// loop still reads the requests channel (so a Resume can arrive) until
// Options.MaxQueued requests are waiting; EventLoop.Resume resumes from
// outside the channel.
type Pause struct{}

// Resume undoes Pause.
type Resume struct{}

func (Publish) isRequest()     {}
func (Subscribe) isRequest()   {}
func (Unsubscribe) isRequest() {}
func (Ack) isRequest()         {}
func (Disconnect) isRequest()  {}
func (Pause) isRequest()       {}
func (Resume) isRequest()      {}

// Properties are the MQTT 5 properties of an application message, outgoing
// (Publish, a Will) and incoming (Message). Zero fields are not sent.
type Properties struct {
	PayloadIsUTF8   bool          // Payload Format Indicator
	MessageExpiry   time.Duration // 0: none; a fraction of a second is rounded up; at most 2^32-1 s
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	// User are the user properties: UserProps("name", "value", ...).
	User UserProperties
	// SubscriptionIDs are the identifiers of the subscriptions a received
	// message matched, every one, in the order the broker sent them
	// (incoming only).
	SubscriptionIDs []int
}

// Shutdown ends the run gracefully: the loop stops taking requests, sends
// DISCONNECT (the broker keeps the session when Options.SessionExpiry > 0),
// closes the connection and ends the run with ErrStopped. Everything still
// queued or in flight stays in the session (EventLoop.State) for the next
// run or loop.
type Shutdown struct{}

// Throttle caps outgoing publishes at PerSecond from now on (0 removes the
// cap), with bursts of up to Burst publishes (default 1), to leave bandwidth
// to other work on a thin link. Queued publishes wait; none is dropped.
// PerSecond must be 0 or between one publish a day and 1e9 a second (NaN
// and infinities are refused with ErrInvalidRequest).
type Throttle struct {
	PerSecond float64
	Burst     int
}

func (Shutdown) isRequest() {}
func (Throttle) isRequest() {}
