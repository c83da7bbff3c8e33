package wire

import (
	"errors"
	"fmt"
	"slices"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Protocol versions, as the protocol level byte of CONNECT carries them.
const (
	// MQTT311 is MQTT 3.1.1 (protocol level 4).
	MQTT311 byte = 4
	// MQTT5 is MQTT 5 (protocol level 5), the default.
	MQTT5 byte = 5
)

// ErrUnsupportedVersion means a Reader or Writer was asked for a protocol
// version other than MQTT311 and MQTT5.
var ErrUnsupportedVersion = errors.New("mqttloop: unsupported MQTT protocol version")

// normVersion maps 0 to MQTT5 and refuses versions this package does not
// speak.
func normVersion(v byte) (byte, error) {
	switch v {
	case 0, MQTT5:
		return MQTT5, nil
	case MQTT311:
		return MQTT311, nil
	}
	return 0, fmt.Errorf("%w: %d (4 is MQTT 3.1.1, 5 is MQTT 5)", ErrUnsupportedVersion, v)
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

// propsEmpty reports whether pr carries no property at all. A test keeps
// it in line with the fields of packets.Properties.
func propsEmpty(pr *packets.Properties) bool {
	return pr == nil ||
		pr.PayloadFormat == nil && pr.MessageExpiry == nil && pr.ContentType == "" &&
			pr.ResponseTopic == "" && len(pr.CorrelationData) == 0 && pr.SubscriptionIdentifier == nil &&
			pr.SessionExpiryInterval == nil && pr.AssignedClientID == "" && pr.ServerKeepAlive == nil &&
			pr.AuthMethod == "" && len(pr.AuthData) == 0 && pr.RequestProblemInfo == nil &&
			pr.WillDelayInterval == nil && pr.RequestResponseInfo == nil && pr.ResponseInfo == "" &&
			pr.ServerReference == "" && pr.ReasonString == "" && pr.ReceiveMaximum == nil &&
			pr.TopicAliasMaximum == nil && pr.TopicAlias == nil && pr.MaximumQOS == nil &&
			pr.RetainAvailable == nil && len(pr.User) == 0 && pr.MaximumPacketSize == nil &&
			pr.WildcardSubAvailable == nil && pr.SubIDAvailable == nil && pr.SharedSubAvailable == nil
}

func invalid311(typ byte, what string) error {
	return fmt.Errorf("%w: MQTT 3.1.1 %s %s", ErrInvalidPacket, packetNames[typ], what)
}

func noProps311(typ byte, pr *packets.Properties) error {
	if propsEmpty(pr) {
		return nil
	}
	return invalid311(typ, "with properties (MQTT 3.1.1 has none)")
}

// AppendPacket311 encodes p as one MQTT 3.1.1 control packet, fixed header
// included, and appends it to dst. p is a content struct of
// github.com/eclipse/paho.golang/packets, the same packet model as
// AppendPacket's; maxSize works as there.
//
// MQTT 3.1.1 has no properties: a packet that carries any gives an error
// wrapping ErrInvalidPacket, as do the other things 3.1.1 cannot express
// (subscription options beyond QoS, a PUBACK or PUBREC refusing a message,
// an AUTH packet, a password without a user name, a CONNACK or SUBACK
// code without a 3.1.1 equivalent). Nothing is ever written half-encoded.
// What 3.1.1 simply leaves out is not encoded: the reason codes of PUBREL
// and PUBCOMP (3.1.1 has only the plain packet) and of successful acks,
// and the reason code of DISCONNECT, which is always the empty packet.
// CONNECT is written with protocol name "MQTT" and level 4, CleanStart as
// the Clean Session flag; its ProtocolName and ProtocolVersion must be
// empty or "MQTT" and 0 or 4. CONNACK reason codes are translated back to
// 3.1.1 return codes (0x84→1, 0x85→2, 0x88→3, 0x86→4, 0x87→5).
//
// PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ, PINGRESP and
// DISCONNECT are encoded without allocating (beyond growing dst).
func AppendPacket311(dst []byte, p packets.Packet, maxSize int) ([]byte, error) {
	switch v := p.(type) {
	case *packets.Publish:
		if v != nil {
			return appendPublish311(dst, v, maxSize)
		}
	case *packets.Puback:
		if v != nil {
			return appendAck311(dst, packets.PUBACK<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubrec:
		if v != nil {
			return appendAck311(dst, packets.PUBREC<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubrel:
		if v != nil {
			return appendAck311(dst, packets.PUBREL<<4|0x2, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubcomp:
		if v != nil {
			return appendAck311(dst, packets.PUBCOMP<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pingreq:
		if v != nil {
			return appendEmpty(dst, packets.PINGREQ<<4, maxSize)
		}
	case *packets.Pingresp:
		if v != nil {
			return appendEmpty(dst, packets.PINGRESP<<4, maxSize)
		}
	case *packets.Disconnect:
		if v != nil {
			if err := noProps311(packets.DISCONNECT, v.Properties); err != nil {
				return dst, err
			}
			return appendEmpty(dst, packets.DISCONNECT<<4, maxSize)
		}
	case *packets.Connect:
		if v != nil {
			return appendConnect311(dst, v, maxSize)
		}
	case *packets.Connack:
		if v != nil {
			return appendConnack311(dst, v, maxSize)
		}
	case *packets.Subscribe:
		if v != nil {
			return appendSubscribe311(dst, v, maxSize)
		}
	case *packets.Suback:
		if v != nil {
			return appendSuback311(dst, v, maxSize)
		}
	case *packets.Unsubscribe:
		if v != nil {
			return appendUnsubscribe311(dst, v, maxSize)
		}
	case *packets.Unsuback:
		if v != nil {
			return appendUnsuback311(dst, v, maxSize)
		}
	case *packets.Auth:
		return dst, fmt.Errorf("%w: AUTH does not exist in MQTT 3.1.1", ErrInvalidPacket)
	}
	if PacketType(p) == 0 {
		return dst, fmt.Errorf("%w: unknown packet type %T", ErrInvalidPacket, p)
	}
	return dst, fmt.Errorf("%w: nil %T", ErrInvalidPacket, p)
}

func appendPublish311(dst []byte, p *packets.Publish, maxSize int) ([]byte, error) {
	if p.QoS > 2 {
		return dst, fmt.Errorf("%w: PUBLISH with QoS %d", ErrInvalidPacket, p.QoS)
	}
	if len(p.Topic) > 0xFFFF {
		return dst, fmt.Errorf("%w: PUBLISH topic of %d bytes, the limit is 65535", ErrInvalidPacket, len(p.Topic))
	}
	if !publishPropsEmpty(p.Properties) {
		return dst, invalid311(packets.PUBLISH, "with properties (MQTT 3.1.1 has none)")
	}
	rem := 2 + len(p.Topic) + len(p.Payload)
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
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	return append(dst, p.Payload...), nil
}

func appendAck311(dst []byte, header byte, id uint16, reason byte, pr *packets.Properties, maxSize int) ([]byte, error) {
	typ := header >> 4
	if !ackPropsEmpty(pr) {
		return dst, invalid311(typ, "with properties (MQTT 3.1.1 has none)")
	}
	if reason >= 0x80 && (typ == packets.PUBACK || typ == packets.PUBREC) {
		// Sent as a plain ack it would accept the message it refuses.
		return dst, invalid311(typ, fmt.Sprintf("with reason code %#02x: MQTT 3.1.1 cannot refuse a message", reason))
	}
	if maxSize > 0 && maxSize < 4 {
		_, err := checkSize(typ, 2, maxSize)
		return dst, err
	}
	return append(dst, header, 2, byte(id>>8), byte(id)), nil
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
}

// finish writes the fixed header for a body of rem bytes built by body.
func finish(dst []byte, header byte, rem, maxSize int, body func([]byte) []byte) ([]byte, error) {
	total, err := checkSize(header>>4, rem, maxSize)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, total)
	dst = append(dst, header)
	dst = vbi.Append(dst, rem)
	return body(dst), nil
}

func appendConnect311(dst []byte, c *packets.Connect, maxSize int) ([]byte, error) {
	const typ = packets.CONNECT
	if c.ProtocolName != "" && c.ProtocolName != "MQTT" || c.ProtocolVersion != 0 && c.ProtocolVersion != MQTT311 {
		return dst, invalid311(typ, fmt.Sprintf("with protocol %q level %d (must be \"MQTT\" level 4)", c.ProtocolName, c.ProtocolVersion))
	}
	if err := noProps311(typ, c.Properties); err != nil {
		return dst, err
	}
	if c.PasswordFlag && !c.UsernameFlag {
		return dst, invalid311(typ, "with a password but no user name (MQTT-3.1.2-22)")
	}
	fields := []struct {
		name string
		n    int
		on   bool
	}{
		{"client identifier", len(c.ClientID), true},
		{"will topic", len(c.WillTopic), c.WillFlag},
		{"will message", len(c.WillMessage), c.WillFlag},
		{"user name", len(c.Username), c.UsernameFlag},
		{"password", len(c.Password), c.PasswordFlag},
	}
	rem := 10 // protocol name, level, flags, keepalive
	for _, f := range fields {
		if !f.on {
			continue
		}
		if f.n > 0xFFFF {
			return dst, invalid311(typ, fmt.Sprintf("with a %s of %d bytes, the limit is 65535", f.name, f.n))
		}
		rem += 2 + f.n
	}
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.WillFlag {
		if c.WillQOS > 2 {
			return dst, invalid311(typ, fmt.Sprintf("with will QoS %d", c.WillQOS))
		}
		if err := noProps311(typ, c.WillProperties); err != nil {
			return dst, err
		}
		flags |= 0x04 | c.WillQOS<<3
		if c.WillRetain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	return finish(dst, typ<<4, rem, maxSize, func(b []byte) []byte {
		b = append(b, 0, 4, 'M', 'Q', 'T', 'T', MQTT311, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
		b = appendString(b, c.ClientID)
		if c.WillFlag {
			b = appendString(b, c.WillTopic)
			b = appendBinary(b, c.WillMessage)
		}
		if c.UsernameFlag {
			b = appendString(b, c.Username)
		}
		if c.PasswordFlag {
			b = appendBinary(b, c.Password)
		}
		return b
	})
}

func appendConnack311(dst []byte, c *packets.Connack, maxSize int) ([]byte, error) {
	if err := noProps311(packets.CONNACK, c.Properties); err != nil {
		return dst, err
	}
	code, ok := connack5To311(c.ReasonCode)
	if !ok {
		return dst, invalid311(packets.CONNACK, fmt.Sprintf("with reason code %#02x, which has no 3.1.1 return code", c.ReasonCode))
	}
	var flags byte
	if c.SessionPresent {
		flags = 1
	}
	return finish(dst, packets.CONNACK<<4, 2, maxSize, func(b []byte) []byte {
		return append(b, flags, code)
	})
}

func appendSubscribe311(dst []byte, s *packets.Subscribe, maxSize int) ([]byte, error) {
	const typ = packets.SUBSCRIBE
	if err := noProps311(typ, s.Properties); err != nil {
		return dst, err
	}
	if len(s.Subscriptions) == 0 {
		return dst, invalid311(typ, "without topic filters")
	}
	rem := 2
	for _, o := range s.Subscriptions {
		if len(o.Topic) > 0xFFFF {
			return dst, invalid311(typ, fmt.Sprintf("with a topic filter of %d bytes, the limit is 65535", len(o.Topic)))
		}
		if o.QoS > 2 {
			return dst, invalid311(typ, fmt.Sprintf("with QoS %d", o.QoS))
		}
		if o.NoLocal || o.RetainAsPublished || o.RetainHandling != 0 {
			return dst, invalid311(typ, "with no-local, retain-as-published or retain-handling options (MQTT 5 only)")
		}
		rem += 2 + len(o.Topic) + 1
	}
	return finish(dst, typ<<4|0x2, rem, maxSize, func(b []byte) []byte {
		b = append(b, byte(s.PacketID>>8), byte(s.PacketID))
		for _, o := range s.Subscriptions {
			b = appendString(b, o.Topic)
			b = append(b, o.QoS)
		}
		return b
	})
}

func appendSuback311(dst []byte, s *packets.Suback, maxSize int) ([]byte, error) {
	const typ = packets.SUBACK
	if err := noProps311(typ, s.Properties); err != nil {
		return dst, err
	}
	if len(s.Reasons) == 0 {
		return dst, invalid311(typ, "without return codes")
	}
	for _, r := range s.Reasons {
		if r > 2 && r != 0x80 {
			return dst, invalid311(typ, fmt.Sprintf("with reason code %#02x (3.1.1 has 0, 1, 2 and 0x80)", r))
		}
	}
	return finish(dst, typ<<4, 2+len(s.Reasons), maxSize, func(b []byte) []byte {
		b = append(b, byte(s.PacketID>>8), byte(s.PacketID))
		return append(b, s.Reasons...)
	})
}

func appendUnsubscribe311(dst []byte, u *packets.Unsubscribe, maxSize int) ([]byte, error) {
	const typ = packets.UNSUBSCRIBE
	if err := noProps311(typ, u.Properties); err != nil {
		return dst, err
	}
	if len(u.Topics) == 0 {
		return dst, invalid311(typ, "without topic filters")
	}
	rem := 2
	for _, t := range u.Topics {
		if len(t) > 0xFFFF {
			return dst, invalid311(typ, fmt.Sprintf("with a topic filter of %d bytes, the limit is 65535", len(t)))
		}
		rem += 2 + len(t)
	}
	return finish(dst, typ<<4|0x2, rem, maxSize, func(b []byte) []byte {
		b = append(b, byte(u.PacketID>>8), byte(u.PacketID))
		for _, t := range u.Topics {
			b = appendString(b, t)
		}
		return b
	})
}

func appendUnsuback311(dst []byte, u *packets.Unsuback, maxSize int) ([]byte, error) {
	const typ = packets.UNSUBACK
	if err := noProps311(typ, u.Properties); err != nil {
		return dst, err
	}
	for _, r := range u.Reasons {
		if r >= 0x80 {
			return dst, invalid311(typ, fmt.Sprintf("with reason code %#02x: MQTT 3.1.1 cannot refuse an unsubscribe", r))
		}
	}
	return finish(dst, typ<<4, 2, maxSize, func(b []byte) []byte {
		return append(b, byte(u.PacketID>>8), byte(u.PacketID))
	})
}

// checkHeader311 validates the first byte of an MQTT 3.1.1 packet: as
// checkHeader, and type 15 (AUTH in MQTT 5) is reserved.
func checkHeader311(header byte) error {
	if header>>4 == packets.AUTH {
		return fmt.Errorf("%w: reserved packet type 15 in MQTT 3.1.1 (first byte %#02x)", ErrMalformedPacket, header)
	}
	return checkHeader(header)
}

// plain is a control packet and its content in one allocation.
type plain[T any] struct {
	cp packets.ControlPacket
	c  T
}

// Decode311 decodes one complete MQTT 3.1.1 packet from its first byte
// (type and flags) and its body, like Decode does for MQTT 5, into the
// same packet model: structs of github.com/eclipse/paho.golang/packets
// whose Properties (and WillProperties) are nil, since 3.1.1 has none.
// The packet does not refer to body.
//
// Translations: CONNACK return codes 1-5 become the MQTT 5 reason codes of
// the same meaning (1→0x84 unsupported protocol version, 2→0x85 client
// identifier not valid, 3→0x88 server unavailable, 4→0x86 bad user name or
// password, 5→0x87 not authorized); acknowledgements carry reason code 0;
// SUBACK return codes (0, 1, 2, 0x80) are kept as they are, 0x80 being the
// failure notification in both versions; UNSUBACK has no reason codes
// (Reasons is nil); DISCONNECT has reason code 0.
//
// Decode311 checks the packet type (15 is reserved in 3.1.1) and flags,
// that every length matches the body exactly, that strings are valid
// UTF-8 without U+0000, and the reserved bits and values 3.1.1 defines.
// Every failure is an error wrapping ErrMalformedPacket; it never panics.
// PUBLISH and the acknowledgements are decoded with one allocation for
// the packet (plus topic and payload for PUBLISH).
func Decode311(header byte, body []byte) (*packets.ControlPacket, error) {
	if err := checkHeader311(header); err != nil {
		return nil, err
	}
	typ, flags := header>>4, header&0x0F
	switch typ {
	case packets.PUBLISH:
		return decodePublish311(flags, body)
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		return decodeAck311(typ, flags, body)
	case packets.PINGREQ, packets.PINGRESP, packets.DISCONNECT:
		if len(body) != 0 {
			return nil, malformed(typ, fmt.Sprintf("with a body of %d bytes", len(body)))
		}
		cp := &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: typ}}
		switch typ {
		case packets.PINGREQ:
			cp.Content = &packets.Pingreq{}
		case packets.PINGRESP:
			cp.Content = &packets.Pingresp{}
		default:
			cp.Content = &packets.Disconnect{}
		}
		return cp, nil
	case packets.CONNACK:
		return decodeConnack311(body)
	case packets.UNSUBACK:
		if len(body) != 2 {
			return nil, malformed(typ, fmt.Sprintf("of %d bytes, must be 2 in MQTT 3.1.1", len(body)))
		}
		b := new(plain[packets.Unsuback])
		b.cp.Type, b.cp.Content = typ, &b.c
		b.c.PacketID = uint16(body[0])<<8 | uint16(body[1])
		return &b.cp, nil
	}
	r := &reader311{b: body, typ: typ}
	var cp *packets.ControlPacket
	switch typ {
	case packets.CONNECT:
		cp = r.connect()
	case packets.SUBSCRIBE:
		cp = r.subscribe()
	case packets.SUBACK:
		cp = r.suback()
	case packets.UNSUBSCRIBE:
		cp = r.unsubscribe()
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.i != len(body) {
		return nil, malformed(typ, fmt.Sprintf("with %d unexpected bytes at the end", len(body)-r.i))
	}
	cp.Type, cp.Flags = typ, flags
	return cp, nil
}

func decodePublish311(flags byte, body []byte) (*packets.ControlPacket, error) {
	topic, qos, id, i, err := publishHeader(flags, body)
	if err != nil {
		return nil, err
	}
	b := new(plain[packets.Publish])
	b.cp.Type, b.cp.Flags, b.cp.Content = packets.PUBLISH, flags, &b.c
	b.c = packets.Publish{
		Topic:     string(topic),
		PacketID:  id,
		QoS:       qos,
		Duplicate: flags&0x8 != 0,
		Retain:    flags&0x1 != 0,
		Payload:   make([]byte, len(body)-i),
	}
	copy(b.c.Payload, body[i:])
	return &b.cp, nil
}

func decodeAck311(typ, flags byte, body []byte) (*packets.ControlPacket, error) {
	if len(body) != 2 {
		return nil, malformed(typ, fmt.Sprintf("of %d bytes, must be 2 in MQTT 3.1.1", len(body)))
	}
	id := uint16(body[0])<<8 | uint16(body[1])
	var cp *packets.ControlPacket
	switch typ {
	case packets.PUBACK:
		b := new(plain[packets.Puback])
		b.c.PacketID, cp, b.cp.Content = id, &b.cp, &b.c
	case packets.PUBREC:
		b := new(plain[packets.Pubrec])
		b.c.PacketID, cp, b.cp.Content = id, &b.cp, &b.c
	case packets.PUBREL:
		b := new(plain[packets.Pubrel])
		b.c.PacketID, cp, b.cp.Content = id, &b.cp, &b.c
	default:
		b := new(plain[packets.Pubcomp])
		b.c.PacketID, cp, b.cp.Content = id, &b.cp, &b.c
	}
	cp.Type, cp.Flags = typ, flags
	return cp, nil
}

func decodeConnack311(body []byte) (*packets.ControlPacket, error) {
	if len(body) != 2 {
		return nil, malformed(packets.CONNACK, fmt.Sprintf("of %d bytes, must be 2 in MQTT 3.1.1", len(body)))
	}
	if body[0]&^1 != 0 {
		return nil, malformed(packets.CONNACK, fmt.Sprintf("with reserved acknowledge flags set (%#02x)", body[0]))
	}
	if body[1] >= byte(len(connack311To5)) {
		return nil, malformed(packets.CONNACK, fmt.Sprintf("with reserved return code %d", body[1]))
	}
	b := new(plain[packets.Connack])
	b.cp.Type, b.cp.Content = packets.CONNACK, &b.c
	b.c.SessionPresent = body[0]&1 != 0
	b.c.ReasonCode = connack311To5[body[1]]
	return &b.cp, nil
}

// reader311 reads the fields of a 3.1.1 packet body; the first failure
// sticks in err and later reads return zero values.
type reader311 struct {
	b   []byte
	i   int
	typ byte
	err error
}

func (r *reader311) fail(what string) {
	if r.err == nil {
		r.err = malformed(r.typ, what)
	}
}

func (r *reader311) byte1(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.fail("too short for its " + what)
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *reader311) u16(what string) uint16 {
	if r.err != nil {
		return 0
	}
	if r.i+2 > len(r.b) {
		r.fail("too short for its " + what)
		return 0
	}
	r.i += 2
	return uint16(r.b[r.i-2])<<8 | uint16(r.b[r.i-1])
}

// binary reads a two-byte length and that many bytes (a copy).
func (r *reader311) binary(what string) []byte {
	n := int(r.u16(what + " length"))
	if r.err != nil {
		return nil
	}
	if r.i+n > len(r.b) {
		r.fail(what + " longer than the packet")
		return nil
	}
	r.i += n
	return slices.Clone(r.b[r.i-n : r.i])
}

// str reads a UTF-8 string.
func (r *reader311) str(what string) string {
	n := int(r.u16(what + " length"))
	if r.err != nil {
		return ""
	}
	if r.i+n > len(r.b) {
		r.fail(what + " longer than the packet")
		return ""
	}
	s := r.b[r.i : r.i+n]
	r.i += n
	if !validUTF8String(s) {
		r.fail(what + " is not valid UTF-8 or contains U+0000")
		return ""
	}
	return string(s)
}

func (r *reader311) more() bool { return r.err == nil && r.i < len(r.b) }

func (r *reader311) connect() *packets.ControlPacket {
	b := new(plain[packets.Connect])
	c := &b.c
	b.cp.Content = c
	name := r.str("protocol name")
	level := r.byte1("protocol level")
	if r.err == nil && (name != "MQTT" || level != MQTT311) {
		r.fail(fmt.Sprintf("with protocol %q level %d (MQTT 3.1.1 is \"MQTT\" level 4)", name, level))
	}
	flags := r.byte1("connect flags")
	c.KeepAlive = r.u16("keepalive")
	if r.err != nil {
		return nil
	}
	c.ProtocolName, c.ProtocolVersion = name, level
	c.CleanStart = flags&0x02 != 0
	c.WillFlag = flags&0x04 != 0
	c.WillQOS = flags >> 3 & 0x3
	c.WillRetain = flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	switch {
	case flags&0x01 != 0:
		r.fail("with the reserved connect flag set (MQTT-3.1.2-3)")
	case c.WillQOS == 3:
		r.fail("with will QoS 3")
	case !c.WillFlag && (c.WillQOS != 0 || c.WillRetain):
		r.fail("with will QoS or retain but no will (MQTT-3.1.2-13)")
	case c.PasswordFlag && !c.UsernameFlag:
		r.fail("with a password but no user name (MQTT-3.1.2-22)")
	}
	c.ClientID = r.str("client identifier")
	if c.WillFlag {
		c.WillTopic = r.str("will topic")
		c.WillMessage = r.binary("will message")
	}
	if c.UsernameFlag {
		c.Username = r.str("user name")
	}
	if c.PasswordFlag {
		c.Password = r.binary("password")
	}
	return &b.cp
}

func (r *reader311) subscribe() *packets.ControlPacket {
	b := new(plain[packets.Subscribe])
	b.cp.Content = &b.c
	b.c.PacketID = r.u16("packet identifier")
	if !r.more() {
		r.fail("without topic filters (MQTT-3.8.3-3)")
	}
	for r.more() {
		topic := r.str("topic filter")
		opts := r.byte1("requested QoS")
		if r.err == nil && opts > 2 {
			r.fail(fmt.Sprintf("with requested QoS byte %#02x (reserved bits or QoS 3)", opts))
		}
		b.c.Subscriptions = append(b.c.Subscriptions, packets.SubOptions{Topic: topic, QoS: opts})
	}
	return &b.cp
}

func (r *reader311) suback() *packets.ControlPacket {
	b := new(plain[packets.Suback])
	b.cp.Content = &b.c
	b.c.PacketID = r.u16("packet identifier")
	if !r.more() {
		r.fail("without return codes")
		return &b.cp
	}
	b.c.Reasons = slices.Clone(r.b[r.i:])
	r.i = len(r.b)
	for _, rc := range b.c.Reasons {
		if rc > 2 && rc != 0x80 {
			r.fail(fmt.Sprintf("with reserved return code %#02x", rc))
		}
	}
	return &b.cp
}

func (r *reader311) unsubscribe() *packets.ControlPacket {
	b := new(plain[packets.Unsubscribe])
	b.cp.Content = &b.c
	b.c.PacketID = r.u16("packet identifier")
	if !r.more() {
		r.fail("without topic filters (MQTT-3.10.3-2)")
	}
	for r.more() {
		b.c.Topics = append(b.c.Topics, r.str("topic filter"))
	}
	return &b.cp
}
