package wire

import (
	"encoding/binary"
	"fmt"
	"iter"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// propSet is a set of MQTT 5 property identifiers: bit i is identifier i
// (they all lie below 64).
type propSet uint64

func bit(id byte) propSet { return 1 << id }

// The properties each packet may carry (MQTT 5 §2.2.2.2), and a will
// (§3.1.3.2).
const (
	propsWill = 1<<packets.PropPayloadFormat | 1<<packets.PropMessageExpiry | 1<<packets.PropContentType |
		1<<packets.PropResponseTopic | 1<<packets.PropCorrelationData | 1<<packets.PropWillDelayInterval |
		1<<packets.PropUser
	propsPublish = 1<<packets.PropPayloadFormat | 1<<packets.PropMessageExpiry | 1<<packets.PropContentType |
		1<<packets.PropResponseTopic | 1<<packets.PropCorrelationData | 1<<packets.PropSubscriptionIdentifier |
		1<<packets.PropTopicAlias | 1<<packets.PropUser
	propsConnect = 1<<packets.PropSessionExpiryInterval | 1<<packets.PropAuthMethod | 1<<packets.PropAuthData |
		1<<packets.PropRequestProblemInfo | 1<<packets.PropRequestResponseInfo | 1<<packets.PropReceiveMaximum |
		1<<packets.PropTopicAliasMaximum | 1<<packets.PropUser | 1<<packets.PropMaximumPacketSize
	propsConnack = 1<<packets.PropSessionExpiryInterval | 1<<packets.PropAssignedClientID |
		1<<packets.PropServerKeepAlive | 1<<packets.PropAuthMethod | 1<<packets.PropAuthData |
		1<<packets.PropResponseInfo | 1<<packets.PropServerReference | 1<<packets.PropReasonString |
		1<<packets.PropReceiveMaximum | 1<<packets.PropTopicAliasMaximum | 1<<packets.PropMaximumQOS |
		1<<packets.PropRetainAvailable | 1<<packets.PropUser | 1<<packets.PropMaximumPacketSize |
		1<<packets.PropWildcardSubAvailable | 1<<packets.PropSubIDAvailable | 1<<packets.PropSharedSubAvailable
	propsAck         = 1<<packets.PropReasonString | 1<<packets.PropUser // PUBACK ... PUBCOMP, SUBACK, UNSUBACK
	propsSubscribe   = 1<<packets.PropSubscriptionIdentifier | 1<<packets.PropUser
	propsUnsubscribe = 1 << packets.PropUser
	propsDisconnect  = 1<<packets.PropSessionExpiryInterval | 1<<packets.PropServerReference |
		1<<packets.PropReasonString | 1<<packets.PropUser
	propsAuth = 1<<packets.PropAuthMethod | 1<<packets.PropAuthData | 1<<packets.PropReasonString |
		1<<packets.PropUser
)

// propNames names the property identifiers for error messages.
var propNames = [64]string{
	packets.PropPayloadFormat:          "payload format indicator",
	packets.PropMessageExpiry:          "message expiry interval",
	packets.PropContentType:            "content type",
	packets.PropResponseTopic:          "response topic",
	packets.PropCorrelationData:        "correlation data",
	packets.PropSubscriptionIdentifier: "subscription identifier",
	packets.PropSessionExpiryInterval:  "session expiry interval",
	packets.PropAssignedClientID:       "assigned client identifier",
	packets.PropServerKeepAlive:        "server keep alive",
	packets.PropAuthMethod:             "authentication method",
	packets.PropAuthData:               "authentication data",
	packets.PropRequestProblemInfo:     "request problem information",
	packets.PropWillDelayInterval:      "will delay interval",
	packets.PropRequestResponseInfo:    "request response information",
	packets.PropResponseInfo:           "response information",
	packets.PropServerReference:        "server reference",
	packets.PropReasonString:           "reason string",
	packets.PropReceiveMaximum:         "receive maximum",
	packets.PropTopicAliasMaximum:      "topic alias maximum",
	packets.PropTopicAlias:             "topic alias",
	packets.PropMaximumQOS:             "maximum QoS",
	packets.PropRetainAvailable:        "retain available",
	packets.PropUser:                   "user property",
	packets.PropMaximumPacketSize:      "maximum packet size",
	packets.PropWildcardSubAvailable:   "wildcard subscription available",
	packets.PropSubIDAvailable:         "subscription identifier available",
	packets.PropSharedSubAvailable:     "shared subscription available",
}

func propName(id byte) string {
	if id < 64 && propNames[id] != "" {
		return propNames[id]
	}
	return fmt.Sprintf("unknown property %#02x", id)
}

// present returns the set of properties pr would put on the wire. An empty
// string or byte slice is no property (the packets model cannot tell it
// from an absent one). A test keeps it in line with the fields of
// packets.Properties.
func present(pr *packets.Properties) propSet {
	if pr == nil {
		return 0
	}
	var s propSet
	if pr.PayloadFormat != nil {
		s |= 1 << packets.PropPayloadFormat
	}
	if pr.MessageExpiry != nil {
		s |= 1 << packets.PropMessageExpiry
	}
	if pr.ContentType != "" {
		s |= 1 << packets.PropContentType
	}
	if pr.ResponseTopic != "" {
		s |= 1 << packets.PropResponseTopic
	}
	if len(pr.CorrelationData) > 0 {
		s |= 1 << packets.PropCorrelationData
	}
	if pr.SubscriptionIdentifier != nil {
		s |= 1 << packets.PropSubscriptionIdentifier
	}
	if pr.SessionExpiryInterval != nil {
		s |= 1 << packets.PropSessionExpiryInterval
	}
	if pr.AssignedClientID != "" {
		s |= 1 << packets.PropAssignedClientID
	}
	if pr.ServerKeepAlive != nil {
		s |= 1 << packets.PropServerKeepAlive
	}
	if pr.AuthMethod != "" {
		s |= 1 << packets.PropAuthMethod
	}
	if len(pr.AuthData) > 0 {
		s |= 1 << packets.PropAuthData
	}
	if pr.RequestProblemInfo != nil {
		s |= 1 << packets.PropRequestProblemInfo
	}
	if pr.WillDelayInterval != nil {
		s |= 1 << packets.PropWillDelayInterval
	}
	if pr.RequestResponseInfo != nil {
		s |= 1 << packets.PropRequestResponseInfo
	}
	if pr.ResponseInfo != "" {
		s |= 1 << packets.PropResponseInfo
	}
	if pr.ServerReference != "" {
		s |= 1 << packets.PropServerReference
	}
	if pr.ReasonString != "" {
		s |= 1 << packets.PropReasonString
	}
	if pr.ReceiveMaximum != nil {
		s |= 1 << packets.PropReceiveMaximum
	}
	if pr.TopicAliasMaximum != nil {
		s |= 1 << packets.PropTopicAliasMaximum
	}
	if pr.TopicAlias != nil {
		s |= 1 << packets.PropTopicAlias
	}
	if pr.MaximumQOS != nil {
		s |= 1 << packets.PropMaximumQOS
	}
	if pr.RetainAvailable != nil {
		s |= 1 << packets.PropRetainAvailable
	}
	if len(pr.User) > 0 {
		s |= 1 << packets.PropUser
	}
	if pr.MaximumPacketSize != nil {
		s |= 1 << packets.PropMaximumPacketSize
	}
	if pr.WildcardSubAvailable != nil {
		s |= 1 << packets.PropWildcardSubAvailable
	}
	if pr.SubIDAvailable != nil {
		s |= 1 << packets.PropSubIDAvailable
	}
	if pr.SharedSubAvailable != nil {
		s |= 1 << packets.PropSharedSubAvailable
	}
	return s
}

// firstOf returns the lowest property identifier in s.
func firstOf(s propSet) byte {
	for id := byte(0); id < 64; id++ {
		if s&bit(id) != 0 {
			return id
		}
	}
	return 0
}

// propsLen checks pr against the properties allowed in a packet of type
// typ (or, with will, in its will) and returns the size of their
// encoding, without the property length in front.
func propsLen(typ byte, will bool, pr *packets.Properties, allowed propSet) (int, error) {
	has := present(pr)
	if has == 0 {
		return 0, nil
	}
	what := packetNames[typ]
	if will {
		what += " will"
	}
	if bad := has &^ allowed; bad != 0 {
		return 0, fmt.Errorf("%w: %s with a %s property, which it cannot carry", ErrInvalidPacket, what, propName(firstOf(bad)))
	}
	n := 0
	str := func(id byte, s string) error {
		if len(s) > 0xFFFF {
			return fmt.Errorf("%w: %s with a %s of %d bytes, the limit is 65535", ErrInvalidPacket, what, propName(id), len(s))
		}
		n += 3 + len(s)
		return nil
	}
	var err error
	for id := byte(0); id < 64 && err == nil; id++ {
		if has&bit(id) == 0 {
			continue
		}
		switch id {
		case packets.PropPayloadFormat, packets.PropRequestProblemInfo, packets.PropRequestResponseInfo,
			packets.PropMaximumQOS, packets.PropRetainAvailable, packets.PropWildcardSubAvailable,
			packets.PropSubIDAvailable, packets.PropSharedSubAvailable:
			n += 2
		case packets.PropServerKeepAlive, packets.PropReceiveMaximum, packets.PropTopicAliasMaximum, packets.PropTopicAlias:
			n += 3
		case packets.PropMessageExpiry, packets.PropSessionExpiryInterval, packets.PropWillDelayInterval,
			packets.PropMaximumPacketSize:
			n += 5
		case packets.PropSubscriptionIdentifier:
			v := *pr.SubscriptionIdentifier
			if v < 1 || v > MaxRemainingLength {
				return 0, fmt.Errorf("%w: %s with subscription identifier %d (1-268435455)", ErrInvalidPacket, what, v)
			}
			n += 1 + vbi.Len(v)
		case packets.PropContentType:
			err = str(id, pr.ContentType)
		case packets.PropResponseTopic:
			err = str(id, pr.ResponseTopic)
		case packets.PropCorrelationData:
			err = str(id, string(pr.CorrelationData))
		case packets.PropAssignedClientID:
			err = str(id, pr.AssignedClientID)
		case packets.PropAuthMethod:
			err = str(id, pr.AuthMethod)
		case packets.PropAuthData:
			err = str(id, string(pr.AuthData))
		case packets.PropResponseInfo:
			err = str(id, pr.ResponseInfo)
		case packets.PropServerReference:
			err = str(id, pr.ServerReference)
		case packets.PropReasonString:
			err = str(id, pr.ReasonString)
		case packets.PropUser:
			for _, u := range pr.User {
				if len(u.Key) > 0xFFFF || len(u.Value) > 0xFFFF {
					return 0, fmt.Errorf("%w: %s with a user property of %d+%d bytes, the limit is 65535 each", ErrInvalidPacket, what, len(u.Key), len(u.Value))
				}
				n += 5 + len(u.Key) + len(u.Value)
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if n > MaxRemainingLength {
		return 0, fmt.Errorf("%w: %s with %d bytes of properties", ErrPacketTooLarge, what, n)
	}
	return n, nil
}

// appendProps appends the property length n (from propsLen) and pr's
// properties, in the order of the paho.golang encoder so that the bytes
// are the same where it encodes correctly.
func appendProps(dst []byte, pr *packets.Properties, n int) []byte {
	dst = vbi.Append(dst, n)
	if n == 0 {
		return dst
	}
	u8 := func(id byte, v *byte) {
		if v != nil {
			dst = append(dst, id, *v)
		}
	}
	u16 := func(id byte, v *uint16) {
		if v != nil {
			dst = append(dst, id, byte(*v>>8), byte(*v))
		}
	}
	u32 := func(id byte, v *uint32) {
		if v != nil {
			dst = append(dst, id)
			dst = binary.BigEndian.AppendUint32(dst, *v)
		}
	}
	str := func(id byte, s string) {
		if s != "" {
			dst = append(dst, id)
			dst = appendString(dst, s)
		}
	}
	u8(packets.PropPayloadFormat, pr.PayloadFormat)
	u32(packets.PropMessageExpiry, pr.MessageExpiry)
	str(packets.PropContentType, pr.ContentType)
	str(packets.PropResponseTopic, pr.ResponseTopic)
	str(packets.PropCorrelationData, string(pr.CorrelationData))
	u16(packets.PropTopicAlias, pr.TopicAlias)
	if pr.SubscriptionIdentifier != nil {
		dst = append(dst, packets.PropSubscriptionIdentifier)
		dst = vbi.Append(dst, *pr.SubscriptionIdentifier)
	}
	u16(packets.PropReceiveMaximum, pr.ReceiveMaximum)
	u16(packets.PropTopicAliasMaximum, pr.TopicAliasMaximum)
	u32(packets.PropMaximumPacketSize, pr.MaximumPacketSize)
	u8(packets.PropMaximumQOS, pr.MaximumQOS)
	str(packets.PropAssignedClientID, pr.AssignedClientID)
	u16(packets.PropServerKeepAlive, pr.ServerKeepAlive)
	u8(packets.PropWildcardSubAvailable, pr.WildcardSubAvailable)
	u8(packets.PropSubIDAvailable, pr.SubIDAvailable)
	u8(packets.PropSharedSubAvailable, pr.SharedSubAvailable)
	u8(packets.PropRetainAvailable, pr.RetainAvailable)
	str(packets.PropResponseInfo, pr.ResponseInfo)
	u8(packets.PropRequestProblemInfo, pr.RequestProblemInfo)
	u32(packets.PropWillDelayInterval, pr.WillDelayInterval)
	u8(packets.PropRequestResponseInfo, pr.RequestResponseInfo)
	u32(packets.PropSessionExpiryInterval, pr.SessionExpiryInterval)
	str(packets.PropAuthMethod, pr.AuthMethod)
	str(packets.PropAuthData, string(pr.AuthData))
	str(packets.PropServerReference, pr.ServerReference)
	str(packets.PropReasonString, pr.ReasonString)
	for _, u := range pr.User {
		dst = append(dst, packets.PropUser)
		dst = appendString(dst, u.Key)
		dst = appendString(dst, u.Value)
	}
	return dst
}

// UserProps is a compact, immutable list of MQTT 5 user properties:
// name-value pairs, in order, names may repeat. For each pair it holds
// the name's length (a uvarint), the name, the value's length and the
// value, so a list costs about what it took on the wire or less (an empty
// pair: 2 bytes here, 5 on the wire, 32 as a packets.User). The zero
// value is the empty list.
type UserProps string

// AppendUserProp appends one pair in UserProps' encoding; UserProps(dst)
// is then the list.
func AppendUserProp(dst []byte, key, value string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// userPropSize is the size of one pair in UserProps' encoding.
func userPropSize(klen, vlen int) int {
	return uvarintLen(klen) + klen + uvarintLen(vlen) + vlen
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// next returns the first pair of u and the rest; ok is false at the end
// (or, for a list not built by this package, at a damaged encoding).
func (u UserProps) next() (key, value string, rest UserProps, ok bool) {
	s := string(u)
	field := func() (string, bool) {
		n, w := uvarint(s)
		if w <= 0 || n > uint64(len(s)-w) {
			return "", false
		}
		f := s[w : w+int(n)]
		s = s[w+int(n):]
		return f, true
	}
	if key, ok = field(); !ok {
		return "", "", "", false
	}
	if value, ok = field(); !ok {
		return "", "", "", false
	}
	return key, value, UserProps(s), true
}

// uvarint is binary.Uvarint over a string.
func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		if b < 0x80 {
			return x | uint64(b)<<shift, i + 1
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// All iterates over the pairs in order. The strings share u's memory.
func (u UserProps) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for rest := u; ; {
			k, v, r, ok := rest.next()
			if !ok || !yield(k, v) {
				return
			}
			rest = r
		}
	}
}

// Len returns the number of pairs.
func (u UserProps) Len() int {
	n := 0
	for rest := u; ; n++ {
		_, _, r, ok := rest.next()
		if !ok {
			return n
		}
		rest = r
	}
}

// Users returns the pairs as the packets model holds them (nil when
// empty); the strings share u's memory.
func (u UserProps) Users() []packets.User {
	n := u.Len()
	if n == 0 {
		return nil
	}
	out := make([]packets.User, 0, n)
	for k, v := range u.All() {
		out = append(out, packets.User{Key: k, Value: v})
	}
	return out
}
