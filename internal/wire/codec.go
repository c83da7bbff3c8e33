package wire

import (
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test for them with errors.Is.
var (
	// ErrMalformedPacket means bytes received from the peer are not a
	// valid MQTT packet of the protocol version spoken: a reserved packet
	// type, wrong fixed-header flags, a remaining length longer than four
	// bytes, or a body that does not decode. The connection must be
	// closed (MQTT 5 reason code 0x81, Malformed Packet).
	ErrMalformedPacket = errors.New("mqttloop: malformed packet")

	// ErrPacketTooLarge means a packet is larger than the allowed maximum
	// packet size: an incoming packet announced more bytes than the
	// Reader accepts (MQTT 5 reason code 0x95, Packet too large), or an
	// outgoing packet would exceed the broker's Maximum Packet Size or the
	// protocol limit.
	ErrPacketTooLarge = errors.New("mqttloop: packet too large")

	// ErrInvalidPacket means Append was given a packet it cannot encode
	// faithfully: a nil or unknown packet, a field out of its protocol
	// range (QoS 3, a string longer than 65,535 bytes, ...), a property
	// the packet type cannot carry, or something the protocol version
	// cannot express.
	ErrInvalidPacket = errors.New("mqttloop: packet cannot be encoded")

	// ErrUnsupportedVersion means a codec was asked for a protocol
	// version other than MQTT311 and MQTT5.
	ErrUnsupportedVersion = errors.New("mqttloop: unsupported MQTT protocol version")
)

// Protocol versions, as the protocol level byte of CONNECT carries them.
const (
	// MQTT311 is MQTT 3.1.1 (protocol level 4).
	MQTT311 byte = 4
	// MQTT5 is MQTT 5 (protocol level 5), the default.
	MQTT5 byte = 5
)

// MaxRemainingLength is the largest remaining length (the size of a
// packet after its fixed header) that MQTT can express: 268,435,455 bytes.
const MaxRemainingLength = vbi.Max

// maxPacketSize is the largest whole packet MQTT can express: one type
// byte, four remaining-length bytes and the largest body.
const maxPacketSize = 1 + 4 + MaxRemainingLength

// Codec encodes and decodes the packets of one protocol version: V5 (the
// zero Codec) or V311. A connection chooses its codec once (CodecFor) and
// gives it to its Reader and Writer; nothing else branches on the
// version. Both versions share one encoder and one decoder, which differ
// only where the protocols do (properties, reason codes, CONNECT flags).
type Codec struct{ v311 bool }

// The two codecs.
var (
	// V5 is MQTT 5, the zero Codec.
	V5 = Codec{}
	// V311 is MQTT 3.1.1.
	V311 = Codec{v311: true}
)

// CodecFor returns the codec of a protocol level: MQTT5 (or 0) or
// MQTT311. Other versions give an error wrapping ErrUnsupportedVersion.
func CodecFor(version byte) (Codec, error) {
	switch version {
	case 0, MQTT5:
		return V5, nil
	case MQTT311:
		return V311, nil
	}
	return V5, fmt.Errorf("%w: %d (4 is MQTT 3.1.1, 5 is MQTT 5)", ErrUnsupportedVersion, version)
}

// Version returns the protocol level the codec speaks: MQTT5 or MQTT311.
func (c Codec) Version() byte {
	if c.v311 {
		return MQTT311
	}
	return MQTT5
}

// String returns "MQTT 5" or "MQTT 3.1.1".
func (c Codec) String() string {
	if c.v311 {
		return "MQTT 3.1.1"
	}
	return "MQTT 5"
}

// AppendPacket is V5.Append.
func AppendPacket(dst []byte, p packets.Packet, maxSize int) ([]byte, error) {
	return V5.Append(dst, p, maxSize)
}

// Decode is V5.Decode.
func Decode(header byte, body []byte) (*Packet, error) { return V5.Decode(header, body) }

var packetNames = [16]string{
	"reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
	"PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
	"PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
}

// PacketType returns the MQTT control packet type (packets.CONNECT,
// packets.PUBLISH, ...) of a packet content struct such as
// *packets.Publish, or 0 if p is not one of the packet types of
// github.com/eclipse/paho.golang/packets.
func PacketType(p packets.Packet) byte {
	switch p.(type) {
	case *packets.Connect:
		return packets.CONNECT
	case *packets.Connack:
		return packets.CONNACK
	case *packets.Publish:
		return packets.PUBLISH
	case *packets.Puback:
		return packets.PUBACK
	case *packets.Pubrec:
		return packets.PUBREC
	case *packets.Pubrel:
		return packets.PUBREL
	case *packets.Pubcomp:
		return packets.PUBCOMP
	case *packets.Subscribe:
		return packets.SUBSCRIBE
	case *packets.Suback:
		return packets.SUBACK
	case *packets.Unsubscribe:
		return packets.UNSUBSCRIBE
	case *packets.Unsuback:
		return packets.UNSUBACK
	case *packets.Pingreq:
		return packets.PINGREQ
	case *packets.Pingresp:
		return packets.PINGRESP
	case *packets.Disconnect:
		return packets.DISCONNECT
	case *packets.Auth:
		return packets.AUTH
	}
	return 0
}

// checkHeader validates the first byte of a packet: the packet type and
// the fixed-header flags (MQTT 5 §2.1.3, 3.1.1 §2.2.2). Type 15 is AUTH in
// MQTT 5 and reserved in 3.1.1.
func (c Codec) checkHeader(header byte) error {
	typ, flags := header>>4, header&0x0F
	switch typ {
	case 0:
		return fmt.Errorf("%w: reserved packet type 0 (first byte %#02x)", ErrMalformedPacket, header)
	case packets.AUTH:
		if c.v311 {
			return fmt.Errorf("%w: reserved packet type 15 in MQTT 3.1.1 (first byte %#02x)", ErrMalformedPacket, header)
		}
	case packets.PUBLISH:
		if flags&0x6 == 0x6 {
			return fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformedPacket)
		}
		return nil
	case packets.PUBREL, packets.SUBSCRIBE, packets.UNSUBSCRIBE:
		if flags != 0x2 {
			return fmt.Errorf("%w: %s with fixed-header flags %#x, must be 0x2", ErrMalformedPacket, packetNames[typ], flags)
		}
		return nil
	}
	if flags != 0 {
		return fmt.Errorf("%w: %s with fixed-header flags %#x, must be 0", ErrMalformedPacket, packetNames[typ], flags)
	}
	return nil
}

// connack311To5 translates MQTT 3.1.1 CONNACK return codes 0-5 to the MQTT
// 5 reason codes of the same meaning.
var connack311To5 = [6]byte{
	0x00, // connection accepted → success
	0x84, // unacceptable protocol version → unsupported protocol version
	0x85, // identifier rejected → client identifier not valid
	0x88, // server unavailable → server unavailable
	0x86, // bad user name or password → bad user name or password
	0x87, // not authorized → not authorized
}

// connack5To311 is the inverse of connack311To5: the 3.1.1 return code of
// an MQTT 5 CONNACK reason code, and whether 3.1.1 has one.
func connack5To311(code byte) (byte, bool) {
	for rc, c := range connack311To5 {
		if c == code {
			return byte(rc), true
		}
	}
	return 0, false
}
