package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// Packet is a decoded packet: the packet in the paho.golang model
// (ControlPacket.Content is *packets.Publish, *packets.Puback, ...) and,
// beside it, what that model cannot hold, or holds at a cost out of
// proportion to the bytes received: see User and SubscriptionIDs.
type Packet struct {
	packets.ControlPacket
	extra *extra // nil when the packet has no properties
}

// extra is what a Packet holds beside the packets model; it lives in the
// allocation of the packet's Properties.
type extra struct {
	user UserProps
	ids  []int
}

// User returns the packet's user properties (MQTT 5), in order. The
// content's Properties.User is nil, except in CONNECT, which carries two
// lists (its own and its will's) in the packets model: a client never
// receives CONNECT (Reader refuses it).
func (p *Packet) User() UserProps {
	if p.extra == nil {
		return ""
	}
	return p.extra.user
}

// SubscriptionIDs returns the Subscription Identifiers of a PUBLISH,
// every one in order (a message that matched several subscriptions
// carries several); Properties.SubscriptionIdentifier points at the
// first.
func (p *Packet) SubscriptionIDs() []int {
	if p.extra == nil {
		return nil
	}
	return p.extra.ids
}

// bundle allocates a Packet and its content in one allocation.
type bundle[T any] struct {
	pkt Packet
	c   T
}

func newPacket[T any](typ, flags byte) (*Packet, *T) {
	b := new(bundle[T])
	b.pkt.Type, b.pkt.Flags = typ, flags
	b.pkt.Content = any(&b.c).(packets.Packet)
	return &b.pkt, &b.c
}

// Decode decodes one complete packet of c's version from its first byte
// (type and flags) and its body, the remaining-length bytes that follow
// the fixed header. The content is a struct of
// github.com/eclipse/paho.golang/packets (*packets.Publish, ...) whose
// Properties is nil when the packet carried none (always in MQTT 3.1.1);
// user properties and every Subscription Identifier come in the Packet
// beside it. The packet does not refer to body: the caller may reuse body
// once Decode returns.
//
// Decode is this package's own, for both versions, so that what a packet
// costs in memory stays proportional to its size whatever its shape: each
// string is allocated at its size once, user properties in one compact
// string (UserProps), subscription identifiers in one slice of the exact
// length, and a property that may appear once but appears twice is
// refused rather than decoded again.
//
// It checks the packet type and fixed-header flags, that every length
// matches the body exactly, that strings are valid UTF-8 without U+0000,
// that each property is one the packet may carry with a value in its
// range (a Receive Maximum, Maximum Packet Size or Subscription
// Identifier of 0 is refused, as is a byte property other than 0 or 1; a
// Topic Alias of 0 is left to the alias logic, which answers every bad
// alias alike), and the reserved bits and values each version defines.
// MQTT 5 short forms are accepted (acknowledgements of two or three bytes,
// DISCONNECT and AUTH of zero or one byte).
//
// Translations: MQTT 3.1.1 CONNACK return codes 1-5 become the MQTT 5
// reason codes of the same meaning (1→0x84 unsupported protocol version,
// 2→0x85 client identifier not valid, 3→0x88 server unavailable, 4→0x86
// bad user name or password, 5→0x87 not authorized); so does a two-byte
// CONNACK received by the MQTT 5 codec, which is what a broker that does
// not speak MQTT 5 answers. In 3.1.1 acknowledgements and DISCONNECT carry
// reason code 0, SUBACK return codes (0, 1, 2, 0x80) are kept as they are,
// and UNSUBACK has no reason codes (Reasons is nil).
//
// Every failure is an error wrapping ErrMalformedPacket; Decode never
// panics. PUBLISH is decoded with three allocations (packet, topic,
// payload) plus one per property present, an acknowledgement with one.
func (c Codec) Decode(header byte, body []byte) (*Packet, error) {
	if err := c.checkHeader(header); err != nil {
		return nil, err
	}
	typ, flags := header>>4, header&0x0F
	d := &decoder{b: body, end: len(body), typ: typ, v5: !c.v311}
	var pkt *Packet
	switch typ {
	case packets.PUBLISH:
		pkt = d.publish(flags)
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		pkt = d.ack(flags)
	case packets.PINGREQ:
		pkt, _ = newPacket[packets.Pingreq](typ, 0)
	case packets.PINGRESP:
		pkt, _ = newPacket[packets.Pingresp](typ, 0)
	case packets.DISCONNECT:
		var p *packets.Disconnect
		pkt, p = newPacket[packets.Disconnect](typ, 0)
		if d.v5 {
			p.ReasonCode, p.Properties = d.reasonOnly(propsDisconnect, pkt)
		}
	case packets.AUTH:
		var p *packets.Auth
		pkt, p = newPacket[packets.Auth](typ, 0)
		p.ReasonCode, p.Properties = d.reasonOnly(propsAuth, pkt)
	case packets.CONNECT:
		pkt = d.connect()
	case packets.CONNACK:
		pkt = d.connack()
	case packets.SUBSCRIBE:
		pkt = d.subscribe(flags)
	case packets.SUBACK:
		pkt = d.suback()
	case packets.UNSUBSCRIBE:
		pkt = d.unsubscribe(flags)
	case packets.UNSUBACK:
		pkt = d.unsuback()
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.i != len(body) {
		return nil, malformed(typ, fmt.Sprintf("with %d unexpected bytes at the end", len(body)-d.i))
	}
	return pkt, nil
}

func malformed(typ byte, what string) error {
	return fmt.Errorf("%w: %s %s", ErrMalformedPacket, packetNames[typ], what)
}

func validUTF8String(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// decoder reads the fields of a packet body; the first failure sticks in
// err and later reads return zero values.
type decoder struct {
	b   []byte
	i   int
	end int // reads stop here: len(b), or the end of a property block
	typ byte
	v5  bool
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = malformed(d.typ, what)
	}
}

func (d *decoder) more() bool { return d.err == nil && d.i < d.end }

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.i >= d.end {
		d.fail("too short for its " + what)
		return 0
	}
	d.i++
	return d.b[d.i-1]
}

func (d *decoder) u16(what string) uint16 {
	if d.err != nil {
		return 0
	}
	if d.i+2 > d.end {
		d.fail("too short for its " + what)
		return 0
	}
	d.i += 2
	return binary.BigEndian.Uint16(d.b[d.i-2:])
}

func (d *decoder) u32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if d.i+4 > d.end {
		d.fail("too short for its " + what)
		return 0
	}
	d.i += 4
	return binary.BigEndian.Uint32(d.b[d.i-4:])
}

func (d *decoder) vbi(what string) int {
	if d.err != nil {
		return 0
	}
	v, n, err := vbi.Parse(d.b[d.i:d.end])
	switch {
	case err != nil:
		d.fail(what + " longer than 4 bytes")
	case n == 0:
		d.fail("too short for its " + what)
	}
	d.i += n
	return v
}

// field reads a two-byte length and that many bytes, without copying.
func (d *decoder) field(what string) []byte {
	n := int(d.u16(what + " length"))
	if d.err != nil {
		return nil
	}
	if d.i+n > d.end {
		d.fail(what + " longer than the packet")
		return nil
	}
	d.i += n
	return d.b[d.i-n : d.i]
}

// text reads a UTF-8 string field, without copying.
func (d *decoder) text(what string) []byte {
	s := d.field(what)
	if d.err == nil && !validUTF8String(s) {
		d.fail(what + " is not valid UTF-8 or contains U+0000")
	}
	return s
}

func (d *decoder) str(what string) string { return string(d.text(what)) }

// binary reads binary data (a copy).
func (d *decoder) binary(what string) []byte {
	b := d.field(what)
	if d.err != nil {
		return nil
	}
	return slices.Clone(b)
}

// rest returns a copy of the remaining bytes and consumes them.
func (d *decoder) rest() []byte {
	b := make([]byte, d.end-d.i)
	copy(b, d.b[d.i:d.end])
	d.i = d.end
	return b
}

func (d *decoder) publish(flags byte) *Packet {
	pkt, p := newPacket[packets.Publish](packets.PUBLISH, flags)
	topic := d.text("topic")
	p.QoS = flags >> 1 & 0x3
	p.Duplicate = flags&0x8 != 0
	p.Retain = flags&0x1 != 0
	if p.QoS > 0 {
		p.PacketID = d.u16("packet identifier")
	}
	if d.v5 {
		p.Properties = d.props(propsPublish, pkt, true)
	}
	if d.err != nil {
		return nil
	}
	p.Topic = string(topic)
	p.Payload = d.rest()
	return pkt
}

// ack decodes PUBACK, PUBREC, PUBREL and PUBCOMP: the packet identifier,
// then in MQTT 5 an optional reason code and optional properties.
func (d *decoder) ack(flags byte) *Packet {
	var (
		pkt    *Packet
		id     *uint16
		reason *byte
		props  **packets.Properties
	)
	switch d.typ {
	case packets.PUBACK:
		var p *packets.Puback
		pkt, p = newPacket[packets.Puback](d.typ, flags)
		id, reason, props = &p.PacketID, &p.ReasonCode, &p.Properties
	case packets.PUBREC:
		var p *packets.Pubrec
		pkt, p = newPacket[packets.Pubrec](d.typ, flags)
		id, reason, props = &p.PacketID, &p.ReasonCode, &p.Properties
	case packets.PUBREL:
		var p *packets.Pubrel
		pkt, p = newPacket[packets.Pubrel](d.typ, flags)
		id, reason, props = &p.PacketID, &p.ReasonCode, &p.Properties
	default:
		var p *packets.Pubcomp
		pkt, p = newPacket[packets.Pubcomp](d.typ, flags)
		id, reason, props = &p.PacketID, &p.ReasonCode, &p.Properties
	}
	*id = d.u16("packet identifier")
	if d.v5 && d.more() {
		*reason = d.byte1("reason code")
		if d.more() {
			*props = d.props(propsAck, pkt, false)
		}
	}
	return pkt
}

// reasonOnly decodes the body of an MQTT 5 DISCONNECT or AUTH: an
// optional reason code and optional properties.
func (d *decoder) reasonOnly(allowed propSet, pkt *Packet) (reason byte, props *packets.Properties) {
	if d.more() {
		reason = d.byte1("reason code")
		if d.more() {
			props = d.props(allowed, pkt, false)
		}
	}
	return reason, props
}

func (d *decoder) connack() *Packet {
	pkt, p := newPacket[packets.Connack](packets.CONNACK, 0)
	flags := d.byte1("acknowledge flags")
	code := d.byte1("reason code")
	if d.err != nil {
		return nil
	}
	if flags&^1 != 0 {
		d.fail(fmt.Sprintf("with reserved acknowledge flags set (%#02x)", flags))
		return nil
	}
	p.SessionPresent = flags&1 != 0
	p.ReasonCode = code
	if !d.v5 || !d.more() {
		// MQTT 3.1.1; or, for MQTT 5, the CONNACK of a broker that does
		// not speak it (no property length), whose refusal must not be
		// mistaken for success (a return code below 0x80).
		if d.v5 && (flags != 0 || code == 0 || code >= byte(len(connack311To5))) {
			d.fail(fmt.Sprintf("of 2 bytes (%02x %02x) without a property length", flags, code))
			return nil
		}
		if code >= byte(len(connack311To5)) {
			d.fail(fmt.Sprintf("with reserved return code %d", code))
			return nil
		}
		p.ReasonCode = connack311To5[code]
		return pkt
	}
	p.Properties = d.props(propsConnack, pkt, false)
	return pkt
}

func (d *decoder) connect() *Packet {
	pkt, p := newPacket[packets.Connect](packets.CONNECT, 0)
	name := d.text("protocol name")
	level := d.byte1("protocol level")
	want := MQTT311
	if d.v5 {
		want = MQTT5
	}
	if d.err == nil && (string(name) != "MQTT" || level != want) {
		d.fail(fmt.Sprintf("with protocol %q level %d (expected \"MQTT\" level %d)", string(name), level, want))
	}
	flags := d.byte1("connect flags")
	p.KeepAlive = d.u16("keepalive")
	if d.err != nil {
		return nil
	}
	p.ProtocolName, p.ProtocolVersion = "MQTT", level
	p.CleanStart = flags&0x02 != 0
	p.WillFlag = flags&0x04 != 0
	p.WillQOS = flags >> 3 & 0x3
	p.WillRetain = flags&0x20 != 0
	p.PasswordFlag = flags&0x40 != 0
	p.UsernameFlag = flags&0x80 != 0
	switch {
	case flags&0x01 != 0:
		d.fail("with the reserved connect flag set (MQTT-3.1.2-3)")
	case p.WillQOS == 3:
		d.fail("with will QoS 3")
	case !p.WillFlag && (p.WillQOS != 0 || p.WillRetain):
		d.fail("with will QoS or retain but no will (MQTT-3.1.2-13)")
	case !d.v5 && p.PasswordFlag && !p.UsernameFlag:
		d.fail("with a password but no user name (MQTT-3.1.2-22)")
	}
	if d.v5 {
		p.Properties = d.props(propsConnect, nil, false)
	}
	p.ClientID = d.str("client identifier")
	if p.WillFlag {
		if d.v5 {
			p.WillProperties = d.props(propsWill, nil, false)
		}
		p.WillTopic = d.str("will topic")
		p.WillMessage = d.binary("will message")
	}
	if p.UsernameFlag {
		p.Username = d.str("user name")
	}
	if p.PasswordFlag {
		p.Password = d.binary("password")
	}
	return pkt
}

func (d *decoder) subscribe(flags byte) *Packet {
	pkt, p := newPacket[packets.Subscribe](packets.SUBSCRIBE, flags)
	p.PacketID = d.u16("packet identifier")
	if d.v5 {
		p.Properties = d.props(propsSubscribe, pkt, false)
	}
	if !d.more() {
		d.fail("without topic filters (MQTT-3.8.3-3)")
	}
	for d.more() {
		topic := d.str("topic filter")
		opts := d.byte1("subscription options")
		if d.err != nil {
			break
		}
		o := packets.SubOptions{Topic: topic, QoS: opts & 0x3}
		switch {
		case !d.v5 && opts > 2:
			d.fail(fmt.Sprintf("with requested QoS byte %#02x (reserved bits or QoS 3)", opts))
		case opts&0xC0 != 0 || o.QoS == 3 || opts>>4&0x3 == 3:
			d.fail(fmt.Sprintf("with subscription options %#02x (reserved bits, QoS 3 or retain handling 3)", opts))
		}
		o.NoLocal = opts&0x04 != 0
		o.RetainAsPublished = opts&0x08 != 0
		o.RetainHandling = opts >> 4 & 0x3
		p.Subscriptions = append(p.Subscriptions, o)
	}
	return pkt
}

func (d *decoder) suback() *Packet {
	pkt, p := newPacket[packets.Suback](packets.SUBACK, 0)
	p.PacketID = d.u16("packet identifier")
	if d.v5 {
		p.Properties = d.props(propsAck, pkt, false)
	}
	if !d.more() {
		d.fail("without reason codes")
		return pkt
	}
	p.Reasons = d.rest()
	if !d.v5 {
		for _, rc := range p.Reasons {
			if rc > 2 && rc != 0x80 {
				d.fail(fmt.Sprintf("with reserved return code %#02x", rc))
			}
		}
	}
	return pkt
}

func (d *decoder) unsubscribe(flags byte) *Packet {
	pkt, p := newPacket[packets.Unsubscribe](packets.UNSUBSCRIBE, flags)
	p.PacketID = d.u16("packet identifier")
	if d.v5 {
		p.Properties = d.props(propsUnsubscribe, pkt, false)
	}
	if !d.more() {
		d.fail("without topic filters (MQTT-3.10.3-2)")
	}
	for d.more() {
		p.Topics = append(p.Topics, d.str("topic filter"))
	}
	return pkt
}

func (d *decoder) unsuback() *Packet {
	pkt, p := newPacket[packets.Unsuback](packets.UNSUBACK, 0)
	p.PacketID = d.u16("packet identifier")
	if !d.v5 {
		return pkt // the trailing-bytes check refuses MQTT 5 reason codes
	}
	p.Properties = d.props(propsAck, pkt, false)
	if !d.more() {
		d.fail("without reason codes")
		return pkt
	}
	p.Reasons = d.rest()
	return pkt
}

// propsBox holds a Properties and the values its pointer fields point
// to, in one allocation.
type propsBox struct {
	pr    packets.Properties
	u8    [8]byte
	u16   [4]uint16
	u32   [4]uint32
	subID int
	extra extra
}

// props decodes a property block (its length, then the properties) of
// the properties allowed, and returns nil when it is empty. User
// properties go to pkt's User in UserProps' encoding, or, when pkt is nil,
// to Properties.User. With multiIDs, Subscription Identifiers may repeat
// and all of them go to pkt's SubscriptionIDs
// (Properties.SubscriptionIdentifier points at the first); otherwise one
// at most is allowed.
//
// Memory stays proportional to the block: one Properties, each string
// and binary value at its size, every user property in one string of at
// most the size they took in the block, and the identifiers in a slice
// of the exact length. A property that may appear once and appears twice
// is refused (MQTT 5 calls it a protocol error).
func (d *decoder) props(allowed propSet, pkt *Packet, multiIDs bool) *packets.Properties {
	n := d.vbi("property length")
	if d.err != nil {
		return nil
	}
	if n == 0 {
		return nil
	}
	if n > d.end-d.i {
		d.fail("properties longer than the packet")
		return nil
	}
	block := d.b[d.i : d.i+n]
	// Read the block with d itself, limited to the block (a second
	// decoder holding its error beside the bytes would make the escape
	// analysis move every caller's buffer to the heap).
	outer := d.end
	d.end = d.i + n
	defer func() { d.end = outer }()
	box := new(propsBox)
	pr := &box.pr
	p := d
	var seen propSet
	userSize, nIDs := 0, 0
	for p.more() {
		id := p.byte1("property identifier")
		if id >= 64 || allowed&bit(id) == 0 {
			p.fail(fmt.Sprintf("with a %s property, which it cannot carry", propName(id)))
			break
		}
		multi := id == packets.PropUser || id == packets.PropSubscriptionIdentifier && multiIDs
		if seen&bit(id) != 0 && !multi {
			p.fail(fmt.Sprintf("with the %s property more than once", propName(id)))
			break
		}
		seen |= bit(id)
		name := propName(id)
		u8 := func(slot int, check bool) {
			v := p.byte1(name)
			if check && v > 1 && p.err == nil {
				p.fail(fmt.Sprintf("with %s %d (must be 0 or 1)", name, v))
			}
			box.u8[slot] = v
		}
		nonZero16 := func(slot int) {
			box.u16[slot] = p.u16(name)
			if box.u16[slot] == 0 && p.err == nil {
				p.fail("with " + name + " 0")
			}
		}
		switch id {
		case packets.PropPayloadFormat:
			u8(0, true)
			pr.PayloadFormat = &box.u8[0]
		case packets.PropRequestProblemInfo:
			u8(1, true)
			pr.RequestProblemInfo = &box.u8[1]
		case packets.PropRequestResponseInfo:
			u8(2, true)
			pr.RequestResponseInfo = &box.u8[2]
		case packets.PropMaximumQOS:
			u8(3, true)
			pr.MaximumQOS = &box.u8[3]
		case packets.PropRetainAvailable:
			u8(4, true)
			pr.RetainAvailable = &box.u8[4]
		case packets.PropWildcardSubAvailable:
			u8(5, true)
			pr.WildcardSubAvailable = &box.u8[5]
		case packets.PropSubIDAvailable:
			u8(6, true)
			pr.SubIDAvailable = &box.u8[6]
		case packets.PropSharedSubAvailable:
			u8(7, true)
			pr.SharedSubAvailable = &box.u8[7]
		case packets.PropServerKeepAlive:
			box.u16[0] = p.u16(name)
			pr.ServerKeepAlive = &box.u16[0]
		case packets.PropReceiveMaximum:
			nonZero16(1)
			pr.ReceiveMaximum = &box.u16[1]
		case packets.PropTopicAliasMaximum:
			box.u16[2] = p.u16(name)
			pr.TopicAliasMaximum = &box.u16[2]
		case packets.PropTopicAlias:
			// 0 is invalid too, but the loop answers it with the reason
			// code of every bad alias (0x94, Topic Alias invalid).
			box.u16[3] = p.u16(name)
			pr.TopicAlias = &box.u16[3]
		case packets.PropMessageExpiry:
			box.u32[0] = p.u32(name)
			pr.MessageExpiry = &box.u32[0]
		case packets.PropSessionExpiryInterval:
			box.u32[1] = p.u32(name)
			pr.SessionExpiryInterval = &box.u32[1]
		case packets.PropWillDelayInterval:
			box.u32[2] = p.u32(name)
			pr.WillDelayInterval = &box.u32[2]
		case packets.PropMaximumPacketSize:
			box.u32[3] = p.u32(name)
			if box.u32[3] == 0 && p.err == nil {
				p.fail("with maximum packet size 0")
			}
			pr.MaximumPacketSize = &box.u32[3]
		case packets.PropSubscriptionIdentifier:
			v := p.vbi(name)
			if v == 0 && p.err == nil {
				p.fail("with subscription identifier 0")
			}
			nIDs++
			if !multiIDs {
				box.subID = v
				pr.SubscriptionIdentifier = &box.subID
			}
		case packets.PropContentType:
			pr.ContentType = p.str(name)
		case packets.PropResponseTopic:
			pr.ResponseTopic = p.str(name)
		case packets.PropAssignedClientID:
			pr.AssignedClientID = p.str(name)
		case packets.PropAuthMethod:
			pr.AuthMethod = p.str(name)
		case packets.PropResponseInfo:
			pr.ResponseInfo = p.str(name)
		case packets.PropServerReference:
			pr.ServerReference = p.str(name)
		case packets.PropReasonString:
			pr.ReasonString = p.str(name)
		case packets.PropCorrelationData:
			pr.CorrelationData = p.binary(name)
		case packets.PropAuthData:
			pr.AuthData = p.binary(name)
		case packets.PropUser:
			k := p.text("user property name")
			v := p.text("user property value")
			userSize += userPropSize(len(k), len(v))
		}
	}
	if d.err != nil {
		return nil
	}
	if userSize > 0 || nIDs > 0 && multiIDs {
		var x *extra
		if pkt != nil {
			x = &box.extra
			pkt.extra = x
		}
		collect(block, userSize, x, pr, nIDs, multiIDs)
	}
	return pr
}

// collect is the second pass of props over a block it validated: it
// gathers the user properties (size bytes in UserProps' encoding) into x,
// or pr.User when x is nil, and, with multiIDs, the n Subscription
// Identifiers into x.
func collect(block []byte, size int, x *extra, pr *packets.Properties, n int, multiIDs bool) {
	var sb strings.Builder
	sb.Grow(size)
	var all []int
	if multiIDs && n > 0 {
		all = make([]int, 0, n)
	}
	var tmp [binary.MaxVarintLen64]byte
	field := func(i int) (b []byte, next int) {
		l := int(binary.BigEndian.Uint16(block[i:]))
		return block[i+2 : i+2+l], i + 2 + l
	}
	for i := 0; i < len(block); {
		id := block[i]
		i++
		switch id {
		case packets.PropUser:
			var k, v []byte
			k, i = field(i)
			v, i = field(i)
			sb.Write(binary.AppendUvarint(tmp[:0], uint64(len(k))))
			sb.Write(k)
			sb.Write(binary.AppendUvarint(tmp[:0], uint64(len(v))))
			sb.Write(v)
		case packets.PropSubscriptionIdentifier:
			v, w, _ := vbi.Parse(block[i:])
			i += w
			if all != nil {
				all = append(all, v)
			}
		case packets.PropPayloadFormat, packets.PropRequestProblemInfo, packets.PropRequestResponseInfo,
			packets.PropMaximumQOS, packets.PropRetainAvailable, packets.PropWildcardSubAvailable,
			packets.PropSubIDAvailable, packets.PropSharedSubAvailable:
			i++
		case packets.PropServerKeepAlive, packets.PropReceiveMaximum, packets.PropTopicAliasMaximum, packets.PropTopicAlias:
			i += 2
		case packets.PropMessageExpiry, packets.PropSessionExpiryInterval, packets.PropWillDelayInterval,
			packets.PropMaximumPacketSize:
			i += 4
		default: // the string and binary properties
			_, i = field(i)
		}
	}
	if size > 0 {
		if x != nil {
			x.user = UserProps(sb.String())
		} else {
			pr.User = UserProps(sb.String()).Users()
		}
	}
	if len(all) > 0 {
		if x != nil {
			x.ids = all
		}
		pr.SubscriptionIdentifier = &all[0]
	}
}
