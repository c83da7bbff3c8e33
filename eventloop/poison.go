package eventloop

import (
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"
)

// ErrPoisonMessage: the broker ended the connection with a DISCONNECT
// blaming a packet (malformed packet, protocol error, topic name invalid,
// packet too large, payload format invalid, ...) PoisonDrops times in a
// row while this QoS 1/2 publish was the first it had not acknowledged,
// so it cannot take the message (a property it refuses, a size or
// content its plugins reject). The publish is removed from the
// session and reported in RequestFailed, wrapping this error and the last
// cause, so that the rest of the session moves on instead of the
// message being replayed, and refused, on every connection.
var ErrPoisonMessage = errors.New("mqttloop: the broker closes the connection on this message")

// PoisonDrops is how many connections in a row the broker may end with a
// DISCONNECT blaming a packet while the same publish is the first it has
// not acknowledged before the loop gives that publish up
// (ErrPoisonMessage). Each drop is one connection (and one reconnect as
// Options.Reconnect allows).
//
// A connection that is merely closed or reset does not count: from the
// client's side it cannot be told from a network cut (a storm of cuts
// right after each reconnect makes the same replayed publish the first
// unacknowledged one every time, as the simulation in internal/sim
// showed), and giving up a message because of the network would break
// the promise of QoS 1/2.
const PoisonDrops = 3

// poisonWatch counts the consecutive connections the broker closed while
// the same publish was the first one it had not acknowledged.
type poisonWatch struct {
	suspect *packets.Publish
	drops   int
}

// noteDrop is called when an established connection ended with cause: if
// the broker ended it blaming a packet while a publish sent on it awaited
// its first acknowledgement, that publish gets a strike, and after
// PoisonDrops strikes in a row it is removed from the session and
// reported.
func (l *EventLoop) noteDrop(cause error) {
	o, ok := l.st.FirstUnacked()
	if !ok || !brokerDropped(cause) {
		l.poison = poisonWatch{}
		return
	}
	if o.Publish != l.poison.suspect {
		l.poison = poisonWatch{suspect: o.Publish}
	}
	l.poison.drops++
	if l.poison.drops < PoisonDrops {
		return
	}
	l.poison = poisonWatch{}
	l.st.Abandon(o.Publish)
	req, isReq := o.Tag.(Request)
	if !isReq {
		req = publishRequestFrom(o.Publish)
	}
	l.emit(RequestFailed{Request: req, Err: fmt.Errorf("%w: removed from the session after the broker closed %d connections in a row with it unacknowledged (the last: %w)", ErrPoisonMessage, PoisonDrops, cause)})
}

// brokerDropped reports whether cause is a DISCONNECT from the broker
// blaming a packet the client sent. Closed or reset connections, the
// client's own timeouts, broker bytes the client could not decode and
// reasons unrelated to what was sent (session taken over, server
// shutting down, quota, ...) are not counted.
func brokerDropped(cause error) bool {
	var rc *ReasonCodeError
	if !errors.As(cause, &rc) || rc.Packet != "DISCONNECT" {
		return false
	}
	switch rc.Code {
	case 0x80, 0x81, 0x82, 0x83, 0x87, 0x90, 0x94, 0x95, 0x99, 0x9A, 0x9B:
		return true
	}
	return false
}
