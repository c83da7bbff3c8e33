package wire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Sentinel errors. Errors returned by this package wrap them with context;
// test for them with errors.Is.
var (
	// ErrMalformedPacket means bytes received from the peer are not a
	// valid MQTT packet of the protocol version spoken (MQTT 5 unless
	// selected otherwise): a reserved packet type, wrong fixed-header
	// flags, a remaining length longer than four bytes, or a body that
	// does not decode. The connection must be closed (MQTT 5 reason code
	// 0x81, Malformed Packet).
	ErrMalformedPacket = errors.New("mqttloop: malformed packet")

	// ErrPacketTooLarge means a packet is larger than the allowed maximum
	// packet size: an incoming packet announced more bytes than the
	// Reader accepts (MQTT 5 reason code 0x95, Packet too large), or an
	// outgoing packet would exceed the broker's Maximum Packet Size or the
	// protocol limit.
	ErrPacketTooLarge = errors.New("mqttloop: packet too large")

	// ErrInvalidPacket means AppendPacket was given a packet it cannot
	// encode faithfully: a nil or unknown packet, a PUBLISH with QoS
	// above 2, or a topic longer than 65,535 bytes.
	ErrInvalidPacket = errors.New("mqttloop: packet cannot be encoded")
)

// MaxRemainingLength is the largest remaining length (the size of a
// packet after its fixed header) that MQTT can express: 268,435,455 bytes.
const MaxRemainingLength = vbi.Max

// maxPacketSize is the largest whole packet MQTT can express: one type
// byte, four remaining-length bytes and the largest body.
const maxPacketSize = 1 + 4 + MaxRemainingLength

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

// AppendPacket encodes p as one MQTT 5 control packet, fixed header
// included, and appends it to dst. p is a content struct of
// github.com/eclipse/paho.golang/packets such as *packets.Publish or
// *packets.Pingreq; the packet type and the fixed-header flags follow from
// it (PUBLISH flags from QoS, Duplicate and Retain; 0x2 for PUBREL,
// SUBSCRIBE and UNSUBSCRIBE; 0 otherwise).
//
// If maxSize > 0 and the encoded packet would be larger than maxSize bytes
// (MQTT 5 counts the whole packet, fixed header included), AppendPacket
// returns dst unchanged and an error wrapping ErrPacketTooLarge; it does
// the same for a packet beyond the protocol limit. A packet it cannot
// encode faithfully gives an error wrapping ErrInvalidPacket.
//
// A PUBLISH without properties, the acknowledgements PUBACK, PUBREC,
// PUBREL and PUBCOMP without properties, PINGREQ and PINGRESP are encoded
// without allocating (beyond growing dst). An acknowledgement with reason
// code 0 and no properties uses the two-byte short form that MQTT 5 allows
// (§3.4.2.1), one with another reason code the three-byte form. Other
// packets are encoded by the paho packets library.
func AppendPacket(dst []byte, p packets.Packet, maxSize int) ([]byte, error) {
	switch v := p.(type) {
	case *packets.Publish:
		if v == nil {
			break
		}
		if v.QoS > 2 {
			return dst, fmt.Errorf("%w: PUBLISH with QoS %d", ErrInvalidPacket, v.QoS)
		}
		if len(v.Topic) > 0xFFFF {
			return dst, fmt.Errorf("%w: PUBLISH topic of %d bytes, the limit is 65535", ErrInvalidPacket, len(v.Topic))
		}
		if publishPropsEmpty(v.Properties) {
			return appendPublish(dst, v, maxSize)
		}
		if publishAliasOnly(v.Properties) {
			return appendPublishAlias(dst, v, maxSize)
		}
	case *packets.Puback:
		if v != nil && ackPropsEmpty(v.Properties) {
			return appendAck(dst, packets.PUBACK<<4, v.PacketID, v.ReasonCode, maxSize)
		}
	case *packets.Pubrec:
		if v != nil && ackPropsEmpty(v.Properties) {
			return appendAck(dst, packets.PUBREC<<4, v.PacketID, v.ReasonCode, maxSize)
		}
	case *packets.Pubrel:
		if v != nil && ackPropsEmpty(v.Properties) {
			return appendAck(dst, packets.PUBREL<<4|0x2, v.PacketID, v.ReasonCode, maxSize)
		}
	case *packets.Pubcomp:
		if v != nil && ackPropsEmpty(v.Properties) {
			return appendAck(dst, packets.PUBCOMP<<4, v.PacketID, v.ReasonCode, maxSize)
		}
	case *packets.Pingreq:
		if v != nil {
			return appendEmpty(dst, packets.PINGREQ<<4, maxSize)
		}
	case *packets.Pingresp:
		if v != nil {
			return appendEmpty(dst, packets.PINGRESP<<4, maxSize)
		}
	}
	return appendGeneric(dst, p, maxSize)
}

// publishPropsEmpty reports whether paho would encode no property for a
// PUBLISH carrying pr (Properties.Pack(PUBLISH) is empty). A test keeps it
// in line with paho's encoder.
func publishPropsEmpty(pr *packets.Properties) bool {
	return pr == nil ||
		pr.PayloadFormat == nil &&
			pr.MessageExpiry == nil &&
			pr.ContentType == "" &&
			pr.ResponseTopic == "" &&
			len(pr.CorrelationData) == 0 &&
			pr.TopicAlias == nil &&
			pr.SubscriptionIdentifier == nil &&
			pr.ReasonString == "" &&
			len(pr.User) == 0
}

// ackPropsEmpty reports whether paho would encode no property for a
// PUBACK, PUBREC, PUBREL or PUBCOMP carrying pr.
func ackPropsEmpty(pr *packets.Properties) bool {
	return pr == nil || pr.ReasonString == "" && len(pr.User) == 0
}

func checkSize(typ byte, rem, maxSize int) (int, error) {
	if rem > MaxRemainingLength {
		return 0, fmt.Errorf("%w: %s with a remaining length of %d bytes, the MQTT limit is %d",
			ErrPacketTooLarge, packetNames[typ], rem, MaxRemainingLength)
	}
	total := 1 + vbi.Len(rem) + rem
	if maxSize > 0 && total > maxSize {
		return 0, fmt.Errorf("%w: %s of %d bytes, the maximum packet size is %d",
			ErrPacketTooLarge, packetNames[typ], total, maxSize)
	}
	return total, nil
}

func appendPublish(dst []byte, p *packets.Publish, maxSize int) ([]byte, error) {
	rem := 2 + len(p.Topic) + 1 + len(p.Payload)
	if p.QoS > 0 {
		rem += 2
	}
	total, err := checkSize(packets.PUBLISH, rem, maxSize)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, total)
	dst = append(dst, packets.PUBLISH<<4|publishFlags(p))
	dst = vbi.Append(dst, rem)
	dst = append(dst, byte(len(p.Topic)>>8), byte(len(p.Topic)))
	dst = append(dst, p.Topic...)
	if p.QoS > 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	dst = append(dst, 0) // property length
	dst = append(dst, p.Payload...)
	return dst, nil
}

func appendAck(dst []byte, header byte, id uint16, reason byte, maxSize int) ([]byte, error) {
	rem := 2
	if reason != 0 {
		rem = 3
	}
	if maxSize > 0 && 2+rem > maxSize {
		_, err := checkSize(header>>4, rem, maxSize)
		return dst, err
	}
	if reason == 0 {
		return append(dst, header, 2, byte(id>>8), byte(id)), nil
	}
	return append(dst, header, 3, byte(id>>8), byte(id), reason), nil
}

func appendEmpty(dst []byte, header byte, maxSize int) ([]byte, error) {
	if maxSize > 0 && maxSize < 2 {
		_, err := checkSize(header>>4, 0, maxSize)
		return dst, err
	}
	return append(dst, header, 0), nil
}

func publishFlags(p *packets.Publish) byte {
	f := p.QoS << 1
	if p.Duplicate {
		f |= 0x8
	}
	if p.Retain {
		f |= 0x1
	}
	return f
}

// appendGeneric encodes any packet through paho's Buffers.
func appendGeneric(dst []byte, p packets.Packet, maxSize int) ([]byte, error) {
	typ := PacketType(p)
	if typ == 0 {
		return dst, fmt.Errorf("%w: unknown packet type %T", ErrInvalidPacket, p)
	}
	if v := reflect.ValueOf(p); v.IsNil() {
		return dst, fmt.Errorf("%w: nil %T", ErrInvalidPacket, p)
	}
	var flags byte
	switch v := p.(type) {
	case *packets.Publish:
		flags = publishFlags(v)
	case *packets.Pubrel, *packets.Subscribe, *packets.Unsubscribe:
		flags = 0x2
	}
	bufs, err := safeBuffers(p)
	if err != nil {
		return dst, err
	}
	rem := 0
	for _, b := range bufs {
		rem += len(b)
	}
	total, err := checkSize(typ, rem, maxSize)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, total)
	dst = append(dst, typ<<4|flags)
	dst = vbi.Append(dst, rem)
	for _, b := range bufs {
		dst = append(dst, b...)
	}
	return dst, nil
}

// safeBuffers runs paho's encoder, turning a panic (paho indexes a
// four-byte array when a property length exceeds the MQTT limit) into an
// error.
func safeBuffers(p packets.Packet) (bufs [][]byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s encoder panicked: %v", ErrInvalidPacket, packetNames[PacketType(p)], r)
		}
	}()
	return p.Buffers(), nil
}

// checkHeader validates the first byte of a packet: the packet type and
// the fixed-header flags (MQTT 5 §2.1.3).
func checkHeader(header byte) error {
	typ, flags := header>>4, header&0x0F
	switch typ {
	case 0:
		return fmt.Errorf("%w: reserved packet type 0 (first byte %#02x)", ErrMalformedPacket, header)
	case packets.PUBLISH:
		if flags&0x6 == 0x6 {
			return fmt.Errorf("%w: PUBLISH with QoS 3", ErrMalformedPacket)
		}
	case packets.PUBREL, packets.SUBSCRIBE, packets.UNSUBSCRIBE:
		if flags != 0x2 {
			return fmt.Errorf("%w: %s with fixed-header flags %#x, must be 0x2", ErrMalformedPacket, packetNames[typ], flags)
		}
	default:
		if flags != 0 {
			return fmt.Errorf("%w: %s with fixed-header flags %#x, must be 0", ErrMalformedPacket, packetNames[typ], flags)
		}
	}
	return nil
}

// bundle allocates a control packet, its content and the content's
// properties in one allocation.
type bundle[T any] struct {
	cp    packets.ControlPacket
	c     T
	props packets.Properties
}

// Decode decodes one complete MQTT 5 packet from its first byte (type and
// flags) and its body, the remaining-length bytes that follow the fixed
// header. The returned packet's Content is a struct of
// github.com/eclipse/paho.golang/packets (*packets.Publish, ...) whose
// Properties is never nil. The packet does not refer to body: the caller
// may reuse body once Decode returns.
//
// Decode checks the packet type and fixed-header flags, that the body
// holds exactly what its lengths announce for PUBLISH, the four
// acknowledgements, PINGREQ, PINGRESP, DISCONNECT and AUTH, and that a
// PUBLISH topic is valid UTF-8 without U+0000. It accepts every short form
// MQTT 5 allows (acknowledgements of two or three bytes, DISCONNECT and
// AUTH of zero or one byte). A two-byte CONNACK with return code 1-5 is
// what a broker that does not speak MQTT 5 (3.1.1, 3.1) answers: it is
// decoded with the MQTT 5 reason code of the same meaning (1 becomes 0x84,
// unsupported protocol version; see Decode311). Every failure, including a
// panic inside the paho decoder, is an error wrapping ErrMalformedPacket.
func Decode(header byte, body []byte) (*packets.ControlPacket, error) {
	if err := checkHeader(header); err != nil {
		return nil, err
	}
	typ, flags := header>>4, header&0x0F
	switch typ {
	case packets.PUBLISH:
		return decodePublish(flags, body)
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		return decodeAck(typ, flags, body)
	case packets.PINGREQ, packets.PINGRESP:
		if len(body) != 0 {
			return nil, fmt.Errorf("%w: %s with a body of %d bytes", ErrMalformedPacket, packetNames[typ], len(body))
		}
		if typ == packets.PINGREQ {
			return &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: typ}, Content: &packets.Pingreq{}}, nil
		}
		return &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: typ}, Content: &packets.Pingresp{}}, nil
	case packets.DISCONNECT, packets.AUTH:
		return decodeReasonOnly(typ, body)
	case packets.CONNACK:
		if len(body) == 2 {
			return decodePre5Connack(body)
		}
	}
	return decodeGeneric(typ, flags, body)
}

// decodePre5Connack decodes a CONNACK without a property length, which is
// what a broker that does not speak MQTT 5 answers an MQTT 5 CONNECT with
// (MQTT 3.1.1 §3.2.2.3: return code 1, unacceptable protocol version). Its
// return codes 1-5 are translated to the MQTT 5 reason codes of the same
// meaning, so that the refusal is not mistaken for success (0x01 is below
// 0x80). Anything else without a property length is malformed.
func decodePre5Connack(body []byte) (*packets.ControlPacket, error) {
	if body[0] != 0 || body[1] == 0 || body[1] >= byte(len(connack311To5)) {
		return nil, malformed(packets.CONNACK, fmt.Sprintf("of 2 bytes (% x) without a property length", body))
	}
	b := new(bundle[packets.Connack])
	b.cp.Type, b.cp.Content = packets.CONNACK, &b.c
	b.c = packets.Connack{ReasonCode: connack311To5[body[1]], Properties: &b.props}
	return &b.cp, nil
}

func malformed(typ byte, what string) error {
	return fmt.Errorf("%w: %s %s", ErrMalformedPacket, packetNames[typ], what)
}

// publishHeader parses what MQTT 5 and 3.1.1 PUBLISH packets share at
// their start: the topic and, at QoS 1 and 2, the packet identifier. i is
// the offset just past them.
func publishHeader(flags byte, body []byte) (topic []byte, qos byte, id uint16, i int, err error) {
	if len(body) < 2 {
		return nil, 0, 0, 0, malformed(packets.PUBLISH, "too short for a topic")
	}
	i = 2 + (int(body[0])<<8 | int(body[1]))
	if i > len(body) {
		return nil, 0, 0, 0, malformed(packets.PUBLISH, "topic longer than the packet")
	}
	topic = body[2:i]
	if !validUTF8String(topic) {
		return nil, 0, 0, 0, malformed(packets.PUBLISH, "topic is not valid UTF-8 or contains U+0000")
	}
	qos = flags >> 1 & 0x3
	if qos > 0 {
		if i+2 > len(body) {
			return nil, 0, 0, 0, malformed(packets.PUBLISH, "too short for a packet identifier")
		}
		id = uint16(body[i])<<8 | uint16(body[i+1])
		i += 2
	}
	return topic, qos, id, i, nil
}

func decodePublish(flags byte, body []byte) (*packets.ControlPacket, error) {
	topic, qos, id, i, err := publishHeader(flags, body)
	if err != nil {
		return nil, err
	}
	propStart := i
	propEnd, propLen, err := propsEnd(packets.PUBLISH, body, i)
	if err != nil {
		return nil, err
	}
	b := new(bundle[packets.Publish])
	b.cp.Type = packets.PUBLISH
	b.cp.Flags = flags
	b.cp.Content = &b.c
	b.c = packets.Publish{
		Topic:      string(topic),
		Properties: &b.props,
		PacketID:   id,
		QoS:        qos,
		Duplicate:  flags&0x8 != 0,
		Retain:     flags&0x1 != 0,
	}
	if propLen > 0 {
		if err := unpackProps(&b.props, body[propStart:propEnd], packets.PUBLISH); err != nil {
			return nil, err
		}
	}
	b.c.Payload = make([]byte, len(body)-propEnd)
	copy(b.c.Payload, body[propEnd:])
	return &b.cp, nil
}

// propsEnd parses the property length that starts at body[i] and returns
// the offset just past the properties and their length.
func propsEnd(typ byte, body []byte, i int) (end, n int, err error) {
	n, w, err := vbi.Parse(body[i:])
	if err != nil {
		return 0, 0, malformed(typ, "property length longer than 4 bytes")
	}
	if w == 0 {
		return 0, 0, malformed(typ, "too short for its property length")
	}
	end = i + w + n
	if end > len(body) {
		return 0, 0, malformed(typ, "properties longer than the packet")
	}
	return end, n, nil
}

func validUTF8String(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

func decodeAck(typ, flags byte, body []byte) (*packets.ControlPacket, error) {
	if len(body) < 2 {
		return nil, malformed(typ, fmt.Sprintf("of %d bytes, at least 2 are required", len(body)))
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	var reason byte
	if len(body) > 2 {
		reason = body[2]
	}
	var cp *packets.ControlPacket
	var props *packets.Properties
	switch typ {
	case packets.PUBACK:
		b := new(bundle[packets.Puback])
		b.c = packets.Puback{Properties: &b.props, PacketID: id, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	case packets.PUBREC:
		b := new(bundle[packets.Pubrec])
		b.c = packets.Pubrec{Properties: &b.props, PacketID: id, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	case packets.PUBREL:
		b := new(bundle[packets.Pubrel])
		b.c = packets.Pubrel{Properties: &b.props, PacketID: id, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	default:
		b := new(bundle[packets.Pubcomp])
		b.c = packets.Pubcomp{Properties: &b.props, PacketID: id, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	}
	cp.Type, cp.Flags = typ, flags
	if len(body) > 3 {
		if err := unpackExactProps(typ, props, body, 3); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// decodeReasonOnly decodes DISCONNECT and AUTH: an optional reason code
// and optional properties (MQTT 5 §3.14.2.1, §3.15.2.1).
func decodeReasonOnly(typ byte, body []byte) (*packets.ControlPacket, error) {
	var reason byte
	if len(body) > 0 {
		reason = body[0]
	}
	var cp *packets.ControlPacket
	var props *packets.Properties
	if typ == packets.DISCONNECT {
		b := new(bundle[packets.Disconnect])
		b.c = packets.Disconnect{Properties: &b.props, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	} else {
		b := new(bundle[packets.Auth])
		b.c = packets.Auth{Properties: &b.props, ReasonCode: reason}
		cp, props, b.cp.Content = &b.cp, &b.props, &b.c
	}
	cp.Type = typ
	if len(body) > 1 {
		if err := unpackExactProps(typ, props, body, 1); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// unpackExactProps decodes the properties starting at body[i], which must
// end exactly where body ends.
func unpackExactProps(typ byte, props *packets.Properties, body []byte, i int) error {
	end, n, err := propsEnd(typ, body, i)
	if err != nil {
		return err
	}
	if end != len(body) {
		return malformed(typ, fmt.Sprintf("with %d bytes after its properties", len(body)-end))
	}
	if n == 0 {
		return nil
	}
	return unpackProps(props, body[i:], typ)
}

// unpackProps runs paho's property decoder over raw (property length
// followed by the properties). paho copies every string and byte slice it
// keeps, so the properties do not refer to raw.
func unpackProps(props *packets.Properties, raw []byte, typ byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s properties: decoder panicked: %v", ErrMalformedPacket, packetNames[typ], r)
		}
	}()
	if err := props.Unpack(bytes.NewBuffer(raw), typ); err != nil {
		return fmt.Errorf("%w: %s properties: %w", ErrMalformedPacket, packetNames[typ], err)
	}
	return nil
}

// decodeGeneric decodes the packets without a fast path (CONNECT,
// CONNACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK) with paho's Unpack.
func decodeGeneric(typ, flags byte, body []byte) (cp *packets.ControlPacket, err error) {
	cp = packets.NewControlPacket(typ)
	if cp == nil {
		return nil, fmt.Errorf("%w: unknown packet type %d", ErrMalformedPacket, typ)
	}
	cp.Flags = flags
	// paho keeps slices of its input (Suback.Reasons, Unsuback.Reasons):
	// give it a copy the caller's buffer reuse cannot touch.
	buf := bytes.NewBuffer(bytes.Clone(body))
	defer func() {
		if r := recover(); r != nil {
			cp, err = nil, fmt.Errorf("%w: %s: decoder panicked: %v", ErrMalformedPacket, packetNames[typ], r)
		}
	}()
	if err := cp.Content.Unpack(buf); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformedPacket, packetNames[typ], err)
	}
	if (typ == packets.CONNECT || typ == packets.CONNACK) && buf.Len() != 0 {
		return nil, malformed(typ, fmt.Sprintf("with %d unexpected bytes at the end", buf.Len()))
	}
	return cp, nil
}
