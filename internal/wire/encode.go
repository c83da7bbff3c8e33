package wire

import (
	"fmt"
	"slices"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Append encodes p as one control packet of c's version, fixed header
// included, and appends it to dst. p is a content struct of
// github.com/eclipse/paho.golang/packets such as *packets.Publish or
// *packets.Pingreq; the packet type and the fixed-header flags follow from
// it (PUBLISH flags from QoS, Duplicate and Retain; 0x2 for PUBREL,
// SUBSCRIBE and UNSUBSCRIBE; 0 otherwise).
//
// If maxSize > 0 and the encoded packet would be larger than maxSize bytes
// (the whole packet, fixed header included), Append returns dst unchanged
// and an error wrapping ErrPacketTooLarge; it does the same for a packet
// beyond the protocol limit. Nothing is ever written half-encoded: a
// packet that cannot be encoded faithfully gives an error wrapping
// ErrInvalidPacket and dst unchanged. That covers a nil or unknown
// packet, values out of their protocol range (QoS 3, strings or binary
// data over 65,535 bytes, a subscription identifier of 0), and properties
// the packet cannot carry (a content type on a SUBSCRIBE). Will
// properties are encoded as will properties (MQTT 5 §3.1.3.2): payload
// format, message expiry, content type, response topic, correlation data,
// will delay and user properties.
//
// MQTT 5 acknowledgements, DISCONNECT and AUTH use the short forms the
// protocol allows (§3.4.2.1, §3.14.2.1, §3.15.2.1): no reason code when it
// is 0 and there are no properties, no property length when there are
// none.
//
// MQTT 3.1.1 has no properties: a packet that carries any gives an error
// wrapping ErrInvalidPacket, as do the other things 3.1.1 cannot express
// (subscription options beyond QoS, a PUBACK or PUBREC refusing a message,
// AUTH, a password without a user name, a CONNACK or SUBACK code without a
// 3.1.1 equivalent). What 3.1.1 simply leaves out is not encoded: the
// reason codes of PUBREL and PUBCOMP and of successful acks, and the
// reason code of DISCONNECT, which is always the empty packet. CONNACK
// reason codes are translated back to 3.1.1 return codes (0x84→1,
// 0x85→2, 0x88→3, 0x86→4, 0x87→5).
//
// CONNECT is written with protocol name "MQTT" and the codec's level;
// its ProtocolName and ProtocolVersion must be empty or "MQTT" and 0 or
// that level. CleanStart is the Clean Session flag of 3.1.1.
//
// PUBLISH, the acknowledgements, PINGREQ, PINGRESP and DISCONNECT are
// encoded without allocating (beyond growing dst), with or without
// properties.
func (c Codec) Append(dst []byte, p packets.Packet, maxSize int) ([]byte, error) {
	switch v := p.(type) {
	case *packets.Publish:
		if v != nil {
			return c.appendPublish(dst, v, maxSize)
		}
	case *packets.Puback:
		if v != nil {
			return c.appendAck(dst, packets.PUBACK<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubrec:
		if v != nil {
			return c.appendAck(dst, packets.PUBREC<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubrel:
		if v != nil {
			return c.appendAck(dst, packets.PUBREL<<4|0x2, v.PacketID, v.ReasonCode, v.Properties, maxSize)
		}
	case *packets.Pubcomp:
		if v != nil {
			return c.appendAck(dst, packets.PUBCOMP<<4, v.PacketID, v.ReasonCode, v.Properties, maxSize)
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
			return c.appendReasonOnly(dst, packets.DISCONNECT, v.ReasonCode, v.Properties, propsDisconnect, maxSize)
		}
	case *packets.Auth:
		if v != nil {
			if c.v311 {
				return dst, fmt.Errorf("%w: AUTH does not exist in MQTT 3.1.1", ErrInvalidPacket)
			}
			return c.appendReasonOnly(dst, packets.AUTH, v.ReasonCode, v.Properties, propsAuth, maxSize)
		}
	case *packets.Connect:
		if v != nil {
			return c.appendConnect(dst, v, maxSize)
		}
	case *packets.Connack:
		if v != nil {
			return c.appendConnack(dst, v, maxSize)
		}
	case *packets.Subscribe:
		if v != nil {
			return c.appendSubscribe(dst, v, maxSize)
		}
	case *packets.Suback:
		if v != nil {
			return c.appendSuback(dst, v, maxSize)
		}
	case *packets.Unsubscribe:
		if v != nil {
			return c.appendUnsubscribe(dst, v, maxSize)
		}
	case *packets.Unsuback:
		if v != nil {
			return c.appendUnsuback(dst, v, maxSize)
		}
	}
	if PacketType(p) == 0 {
		return dst, fmt.Errorf("%w: unknown packet type %T", ErrInvalidPacket, p)
	}
	return dst, fmt.Errorf("%w: nil %T", ErrInvalidPacket, p)
}

// invalid is an ErrInvalidPacket error about a packet of type typ.
func (c Codec) invalid(typ byte, what string) error {
	if c.v311 {
		return fmt.Errorf("%w: MQTT 3.1.1 %s %s", ErrInvalidPacket, packetNames[typ], what)
	}
	return fmt.Errorf("%w: %s %s", ErrInvalidPacket, packetNames[typ], what)
}

// props checks the properties of a packet (or, with will, of its will)
// against what its type allows and returns the size of their encoding:
// always 0 in MQTT 3.1.1, which refuses any.
func (c Codec) props(typ byte, will bool, pr *packets.Properties, allowed propSet) (int, error) {
	if pr == nil {
		return 0, nil // inlined: the hot path
	}
	return c.propsOf(typ, will, pr, allowed)
}

func (c Codec) propsOf(typ byte, will bool, pr *packets.Properties, allowed propSet) (int, error) {
	if c.v311 {
		if present(pr) == 0 {
			return 0, nil
		}
		if will {
			return 0, c.invalid(typ, "with will properties (MQTT 3.1.1 has none)")
		}
		return 0, c.invalid(typ, "with properties (MQTT 3.1.1 has none)")
	}
	return propsLen(typ, will, pr, allowed)
}

// propsField is the size of a property block of n bytes on the wire: its
// length and itself in MQTT 5, nothing in 3.1.1.
func (c Codec) propsField(n int) int {
	if c.v311 {
		return 0
	}
	return vbi.Len(n) + n
}

func (c Codec) appendPropsField(dst []byte, pr *packets.Properties, n int) []byte {
	if c.v311 {
		return dst
	}
	return appendProps(dst, pr, n)
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

// begin checks the size of a packet with remaining length rem, grows dst
// for it and writes its fixed header.
func begin(dst []byte, header byte, rem, maxSize int) ([]byte, error) {
	total, err := checkSize(header>>4, rem, maxSize)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, total)
	dst = append(dst, header)
	return vbi.Append(dst, rem), nil
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = append(dst, byte(len(b)>>8), byte(len(b)))
	return append(dst, b...)
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

func (c Codec) appendPublish(dst []byte, p *packets.Publish, maxSize int) ([]byte, error) {
	if p.QoS > 2 {
		return dst, c.invalid(packets.PUBLISH, fmt.Sprintf("with QoS %d", p.QoS))
	}
	if len(p.Topic) > 0xFFFF {
		return dst, c.invalid(packets.PUBLISH, fmt.Sprintf("topic of %d bytes, the limit is 65535", len(p.Topic)))
	}
	plen, err := c.props(packets.PUBLISH, false, p.Properties, propsPublish)
	if err != nil {
		return dst, err
	}
	rem := 2 + len(p.Topic) + c.propsField(plen) + len(p.Payload)
	if p.QoS > 0 {
		rem += 2
	}
	if dst, err = begin(dst, packets.PUBLISH<<4|publishFlags(p), rem, maxSize); err != nil {
		return dst, err
	}
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	switch {
	case c.v311:
	case plen == 0:
		dst = append(dst, 0) // the hot path: no properties
	default:
		dst = appendProps(dst, p.Properties, plen)
	}
	return append(dst, p.Payload...), nil
}

// appendAck encodes PUBACK, PUBREC, PUBREL and PUBCOMP.
func (c Codec) appendAck(dst []byte, header byte, id uint16, reason byte, pr *packets.Properties, maxSize int) ([]byte, error) {
	typ := header >> 4
	if c.v311 {
		if reason >= 0x80 && (typ == packets.PUBACK || typ == packets.PUBREC) {
			// Sent as a plain ack it would accept the message it refuses.
			return dst, c.invalid(typ, fmt.Sprintf("with reason code %#02x: MQTT 3.1.1 cannot refuse a message", reason))
		}
		reason = 0
	}
	plen, err := c.props(typ, false, pr, propsAck)
	if err != nil {
		return dst, err
	}
	if plen == 0 {
		// The hot path: two or three bytes after the fixed header.
		rem := 2
		if reason != 0 {
			rem = 3
		}
		if maxSize > 0 && 2+rem > maxSize {
			_, err := checkSize(typ, rem, maxSize)
			return dst, err
		}
		if rem == 2 {
			return append(dst, header, 2, byte(id>>8), byte(id)), nil
		}
		return append(dst, header, 3, byte(id>>8), byte(id), reason), nil
	}
	rem := 3 + vbi.Len(plen) + plen
	if dst, err = begin(dst, header, rem, maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, byte(id>>8), byte(id), reason)
	return appendProps(dst, pr, plen), nil
}

func appendEmpty(dst []byte, header byte, maxSize int) ([]byte, error) {
	if maxSize > 0 && maxSize < 2 {
		_, err := checkSize(header>>4, 0, maxSize)
		return dst, err
	}
	return append(dst, header, 0), nil
}

// appendReasonOnly encodes DISCONNECT and AUTH: an optional reason code
// and optional properties; in 3.1.1, DISCONNECT is always empty.
func (c Codec) appendReasonOnly(dst []byte, typ, reason byte, pr *packets.Properties, allowed propSet, maxSize int) ([]byte, error) {
	plen, err := c.props(typ, false, pr, allowed)
	if err != nil {
		return dst, err
	}
	if c.v311 || reason == 0 && plen == 0 {
		return appendEmpty(dst, typ<<4, maxSize)
	}
	rem := 1
	if plen > 0 {
		rem += vbi.Len(plen) + plen
	}
	if dst, err = begin(dst, typ<<4, rem, maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, reason)
	if plen > 0 {
		dst = appendProps(dst, pr, plen)
	}
	return dst, nil
}

func (c Codec) appendConnect(dst []byte, p *packets.Connect, maxSize int) ([]byte, error) {
	const typ = packets.CONNECT
	level := c.Version()
	if p.ProtocolName != "" && p.ProtocolName != "MQTT" || p.ProtocolVersion != 0 && p.ProtocolVersion != level {
		return dst, c.invalid(typ, fmt.Sprintf("with protocol %q level %d (must be \"MQTT\" level %d)", p.ProtocolName, p.ProtocolVersion, level))
	}
	if c.v311 && p.PasswordFlag && !p.UsernameFlag {
		return dst, c.invalid(typ, "with a password but no user name (MQTT-3.1.2-22)")
	}
	plen, err := c.props(typ, false, p.Properties, propsConnect)
	if err != nil {
		return dst, err
	}
	wlen := 0
	if p.WillFlag {
		if p.WillQOS > 2 {
			return dst, c.invalid(typ, fmt.Sprintf("with will QoS %d", p.WillQOS))
		}
		if wlen, err = c.props(typ, true, p.WillProperties, propsWill); err != nil {
			return dst, err
		}
	}
	fields := [...]struct {
		name string
		n    int
		on   bool
	}{
		{"client identifier", len(p.ClientID), true},
		{"will topic", len(p.WillTopic), p.WillFlag},
		{"will message", len(p.WillMessage), p.WillFlag},
		{"user name", len(p.Username), p.UsernameFlag},
		{"password", len(p.Password), p.PasswordFlag},
	}
	rem := 10 + c.propsField(plen) // protocol name, level, flags, keepalive
	if p.WillFlag {
		rem += c.propsField(wlen)
	}
	for _, f := range fields {
		if !f.on {
			continue
		}
		if f.n > 0xFFFF {
			return dst, c.invalid(typ, fmt.Sprintf("with a %s of %d bytes, the limit is 65535", f.name, f.n))
		}
		rem += 2 + f.n
	}
	var flags byte
	if p.CleanStart {
		flags |= 0x02
	}
	if p.WillFlag {
		flags |= 0x04 | p.WillQOS<<3
		if p.WillRetain {
			flags |= 0x20
		}
	}
	if p.PasswordFlag {
		flags |= 0x40
	}
	if p.UsernameFlag {
		flags |= 0x80
	}
	if dst, err = begin(dst, typ<<4, rem, maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, 0, 4, 'M', 'Q', 'T', 'T', level, flags, byte(p.KeepAlive>>8), byte(p.KeepAlive))
	dst = c.appendPropsField(dst, p.Properties, plen)
	dst = appendString(dst, p.ClientID)
	if p.WillFlag {
		dst = c.appendPropsField(dst, p.WillProperties, wlen)
		dst = appendString(dst, p.WillTopic)
		dst = appendBinary(dst, p.WillMessage)
	}
	if p.UsernameFlag {
		dst = appendString(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBinary(dst, p.Password)
	}
	return dst, nil
}

func (c Codec) appendConnack(dst []byte, p *packets.Connack, maxSize int) ([]byte, error) {
	const typ = packets.CONNACK
	plen, err := c.props(typ, false, p.Properties, propsConnack)
	if err != nil {
		return dst, err
	}
	code := p.ReasonCode
	if c.v311 {
		var ok bool
		if code, ok = connack5To311(code); !ok {
			return dst, c.invalid(typ, fmt.Sprintf("with reason code %#02x, which has no 3.1.1 return code", p.ReasonCode))
		}
	}
	var flags byte
	if p.SessionPresent {
		flags = 1
	}
	if dst, err = begin(dst, typ<<4, 2+c.propsField(plen), maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, flags, code)
	return c.appendPropsField(dst, p.Properties, plen), nil
}

func (c Codec) appendSubscribe(dst []byte, p *packets.Subscribe, maxSize int) ([]byte, error) {
	const typ = packets.SUBSCRIBE
	plen, err := c.props(typ, false, p.Properties, propsSubscribe)
	if err != nil {
		return dst, err
	}
	if len(p.Subscriptions) == 0 {
		return dst, c.invalid(typ, "without topic filters")
	}
	rem := 2 + c.propsField(plen)
	for _, o := range p.Subscriptions {
		if len(o.Topic) > 0xFFFF {
			return dst, c.invalid(typ, fmt.Sprintf("with a topic filter of %d bytes, the limit is 65535", len(o.Topic)))
		}
		if o.QoS > 2 {
			return dst, c.invalid(typ, fmt.Sprintf("with QoS %d", o.QoS))
		}
		if o.RetainHandling > 2 {
			return dst, c.invalid(typ, fmt.Sprintf("with retain handling %d", o.RetainHandling))
		}
		if c.v311 && (o.NoLocal || o.RetainAsPublished || o.RetainHandling != 0) {
			return dst, c.invalid(typ, "with no-local, retain-as-published or retain-handling options (MQTT 5 only)")
		}
		rem += 2 + len(o.Topic) + 1
	}
	if dst, err = begin(dst, typ<<4|0x2, rem, maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	dst = c.appendPropsField(dst, p.Properties, plen)
	for _, o := range p.Subscriptions {
		dst = appendString(dst, o.Topic)
		opts := o.QoS | o.RetainHandling<<4
		if o.NoLocal {
			opts |= 0x04
		}
		if o.RetainAsPublished {
			opts |= 0x08
		}
		dst = append(dst, opts)
	}
	return dst, nil
}

func (c Codec) appendSuback(dst []byte, p *packets.Suback, maxSize int) ([]byte, error) {
	const typ = packets.SUBACK
	plen, err := c.props(typ, false, p.Properties, propsAck)
	if err != nil {
		return dst, err
	}
	if len(p.Reasons) == 0 {
		return dst, c.invalid(typ, "without reason codes")
	}
	if c.v311 {
		for _, r := range p.Reasons {
			if r > 2 && r != 0x80 {
				return dst, c.invalid(typ, fmt.Sprintf("with reason code %#02x (3.1.1 has 0, 1, 2 and 0x80)", r))
			}
		}
	}
	if dst, err = begin(dst, typ<<4, 2+c.propsField(plen)+len(p.Reasons), maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	dst = c.appendPropsField(dst, p.Properties, plen)
	return append(dst, p.Reasons...), nil
}

func (c Codec) appendUnsubscribe(dst []byte, p *packets.Unsubscribe, maxSize int) ([]byte, error) {
	const typ = packets.UNSUBSCRIBE
	plen, err := c.props(typ, false, p.Properties, propsUnsubscribe)
	if err != nil {
		return dst, err
	}
	if len(p.Topics) == 0 {
		return dst, c.invalid(typ, "without topic filters")
	}
	rem := 2 + c.propsField(plen)
	for _, t := range p.Topics {
		if len(t) > 0xFFFF {
			return dst, c.invalid(typ, fmt.Sprintf("with a topic filter of %d bytes, the limit is 65535", len(t)))
		}
		rem += 2 + len(t)
	}
	if dst, err = begin(dst, typ<<4|0x2, rem, maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	dst = c.appendPropsField(dst, p.Properties, plen)
	for _, t := range p.Topics {
		dst = appendString(dst, t)
	}
	return dst, nil
}

func (c Codec) appendUnsuback(dst []byte, p *packets.Unsuback, maxSize int) ([]byte, error) {
	const typ = packets.UNSUBACK
	plen, err := c.props(typ, false, p.Properties, propsAck)
	if err != nil {
		return dst, err
	}
	reasons := p.Reasons
	if c.v311 {
		for _, r := range reasons {
			if r >= 0x80 {
				return dst, c.invalid(typ, fmt.Sprintf("with reason code %#02x: MQTT 3.1.1 cannot refuse an unsubscribe", r))
			}
		}
		reasons = nil // 3.1.1 has no reason codes
	} else if len(reasons) == 0 {
		return dst, c.invalid(typ, "without reason codes")
	}
	if dst, err = begin(dst, typ<<4, 2+c.propsField(plen)+len(reasons), maxSize); err != nil {
		return dst, err
	}
	dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	dst = c.appendPropsField(dst, p.Properties, plen)
	return append(dst, reasons...), nil
}
