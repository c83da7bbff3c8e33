package eventloop

import (
	"fmt"

	"github.com/eclipse/paho.golang/packets"
)

// minBrokerPacketSize is the smallest Maximum Packet Size a broker may
// announce for the loop to work: a PUBACK, PUBREC, PUBREL or PUBCOMP
// takes 4 bytes (PINGREQ and DISCONNECT 2). Below it the loop could not
// acknowledge a message or keep the connection alive.
const minBrokerPacketSize = 4

// checkConnack refuses a successful CONNACK whose properties break the
// protocol or leave the client unable to follow it: a Maximum Packet
// Size of 0 (a protocol error) or too small for an acknowledgement, a
// Maximum QoS other than 0 or 1, a Retain Available other than 0 or 1.
// The connection then ends with ErrProtocol instead of losing messages
// whose replies cannot be sent.
func checkConnack(ack *packets.Connack) error {
	pr := ack.Properties
	if pr == nil {
		return nil
	}
	if m := pr.MaximumPacketSize; m != nil && *m < minBrokerPacketSize {
		return fmt.Errorf("%w: CONNACK Maximum Packet Size %d: too small for an acknowledgement (%d bytes), so messages could not be acknowledged", ErrProtocol, *m, minBrokerPacketSize)
	}
	if q := pr.MaximumQOS; q != nil && *q > 1 {
		return fmt.Errorf("%w: CONNACK Maximum QoS %d (only 0 or 1 may be sent)", ErrProtocol, *q)
	}
	if r := pr.RetainAvailable; r != nil && *r > 1 {
		return fmt.Errorf("%w: CONNACK Retain Available %d (must be 0 or 1)", ErrProtocol, *r)
	}
	return nil
}
