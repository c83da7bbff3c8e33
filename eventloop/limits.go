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

// checkConnack refuses a successful CONNACK whose Maximum Packet Size is
// too small for an acknowledgement: the connection ends with ErrProtocol
// instead of losing messages whose replies cannot be sent. (Values the
// protocol forbids outright, such as a Maximum Packet Size of 0 or a
// Maximum QoS of 2, are refused by the decoder as malformed.)
func checkConnack(ack *packets.Connack) error {
	pr := ack.Properties
	if pr == nil {
		return nil
	}
	if m := pr.MaximumPacketSize; m != nil && *m < minBrokerPacketSize {
		return fmt.Errorf("%w: CONNACK Maximum Packet Size %d: too small for an acknowledgement (%d bytes), so messages could not be acknowledged", ErrProtocol, *m, minBrokerPacketSize)
	}
	return nil
}
