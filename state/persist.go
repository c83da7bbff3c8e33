package state

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/state/internal/tracked"
)

// Errors of Load, the stores and AttachStore.
var (
	// ErrCorruptState: saved session data is truncated, damaged or not a
	// session at all. Nothing of it was loaded.
	ErrCorruptState = errors.New("corrupt saved session")
	// ErrUnsupportedVersion: the saved session was written by a newer
	// version of this package, in a format this one cannot read.
	ErrUnsupportedVersion = errors.New("unsupported saved session format version")
)

// FormatVersion is the version of the session format that Save writes
// and of the records a Store holds (see FORMAT.md). Load reads it and
// every earlier version.
const FormatVersion = 1

// magic starts every file that Save writes.
const magic = "MQLSTATE"

// castagnoli is the CRC-32C table of the file checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Kind says which part of the session a Record holds. Stores may keep one
// table (bucket) per Kind; String names them.
type Kind uint8

// The kinds of records. Keys are big-endian so that their byte order is
// their numeric order.
const (
	// KindMeta: the identity (key "identity": server, client id) and
	// the counters (key "counters": next packet id, send sequence).
	KindMeta Kind = 1 + iota
	// KindInFlight: a QoS 1/2 publish in flight; key: its packet id (2
	// bytes).
	KindInFlight
	// KindSubscribing: a SUBSCRIBE awaiting SUBACK; key: its packet id.
	KindSubscribing
	// KindUnsubscribing: an UNSUBSCRIBE awaiting UNSUBACK; key: its
	// packet id.
	KindUnsubscribing
	// KindQueued: a request accepted and not yet sent; key: its position
	// in the queue (8 bytes, ordered).
	KindQueued
	// KindIncomingQoS2: an incoming QoS 2 packet id awaiting PUBREL; key:
	// the id.
	KindIncomingQoS2
	// KindUnackedQoS1: an incoming QoS 1 packet id awaiting a manual ack;
	// key: the id.
	KindUnackedQoS1
	// KindSubscription: an active subscription; key: the topic filter.
	KindSubscription

	kindEnd // one past the last kind
)

// Kinds returns every Kind, in order.
func Kinds() []Kind {
	ks := make([]Kind, 0, kindEnd-KindMeta)
	for k := KindMeta; k < kindEnd; k++ {
		ks = append(ks, k)
	}
	return ks
}

// String returns the kind's name: "meta", "inflight", "subscribing",
// "unsubscribing", "queued", "incoming-qos2", "unacked-qos1" or
// "subscriptions".
func (k Kind) String() string {
	switch k {
	case KindMeta:
		return "meta"
	case KindInFlight:
		return "inflight"
	case KindSubscribing:
		return "subscribing"
	case KindUnsubscribing:
		return "unsubscribing"
	case KindQueued:
		return "queued"
	case KindIncomingQoS2:
		return "incoming-qos2"
	case KindUnackedQoS1:
		return "unacked-qos1"
	case KindSubscription:
		return "subscriptions"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Record is one entry of a session's durable form: a kind, a key unique
// within the kind, and a value in this package's encoding (FORMAT.md). A
// Store keeps records as opaque bytes.
type Record struct {
	Kind  Kind   // which part of the session
	Key   []byte // unique within the kind
	Value []byte // the encoded entry
}

// identityKey is the key of the KindMeta record that holds the session's
// Identity.
const identityKey = "identity"

// countersKey is the key of the KindMeta record of the counters.
const countersKey = "counters"

// decodeIdentity decodes the value of the identity record.
func decodeIdentity(value []byte) (Identity, error) {
	d := dec{b: value}
	id := Identity{Server: d.str(), ClientID: d.str()}
	if !d.end() {
		return Identity{}, fmt.Errorf("%w: identity record", ErrCorruptState)
	}
	return id, nil
}

// Save writes the session in the format of FORMAT.md (version
// FormatVersion): the identity, the counters, the publishes in flight and
// their stage, the unanswered (un)subscribes, the queued requests in
// order, the incoming QoS 2 ids awaiting PUBREL, the QoS 1 ids awaiting a
// manual ack and the active subscriptions, closed by a CRC-32C.
//
// Not saved: tags (see Pending), the configuration (SetConfig), the
// broker's limits (each CONNACK sets them; DefaultLimits until then) and
// the MarkSent times (they belong to a connection).
func (s *MqttState) Save(w io.Writer) error {
	bw := bufio.NewWriter(w)
	sum := crc32.New(castagnoli)
	out := io.MultiWriter(bw, sum)
	head := binary.BigEndian.AppendUint16([]byte(magic), FormatVersion)
	if _, err := out.Write(head); err != nil {
		return fmt.Errorf("state: saving the session: %w", err)
	}
	var rec []byte
	err := s.eachRecord(nil, func(r Record) error {
		rec = appendFramed(rec[:0], r)
		_, err := out.Write(rec)
		return err
	})
	if err == nil {
		_, err = bw.Write(sum.Sum(nil))
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("state: saving the session: %w", err)
	}
	return nil
}

// Load reads a session written by Save. It reads r to the end and checks
// the checksum before building anything: a truncated or damaged input is
// an error wrapping ErrCorruptState, a newer format one wrapping
// ErrUnsupportedVersion, and no session is returned. Memory use is bounded
// by the size of the input.
//
// The loaded session has nil tags (except Resubscribe), a zero Config (set
// it with SetConfig), DefaultLimits and no store attached. Incoming QoS 2
// messages that awaited a manual ack are taken as undelivered (the process
// they were delivered to is gone): the broker's resend is delivered again,
// once.
func Load(r io.Reader) (*MqttState, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("state: reading a saved session: %w", err)
	}
	return decodeFile(data)
}

func decodeFile(data []byte) (*MqttState, error) {
	const headLen = len(magic) + 2
	if len(data) < headLen+crc32.Size {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: empty input", ErrCorruptState)
		}
		return nil, fmt.Errorf("%w: %d bytes, too short for a saved session", ErrCorruptState, len(data))
	}
	if string(data[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not a saved session (bad magic bytes)", ErrCorruptState)
	}
	body, tail := data[:len(data)-crc32.Size], data[len(data)-crc32.Size:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(tail); got != want {
		return nil, fmt.Errorf("%w: checksum mismatch (truncated or damaged)", ErrCorruptState)
	}
	switch v := binary.BigEndian.Uint16(data[len(magic):]); {
	case v == 0:
		return nil, fmt.Errorf("%w: format version 0", ErrCorruptState)
	case v > FormatVersion:
		return nil, fmt.Errorf("%w: version %d (this package reads up to %d)", ErrUnsupportedVersion, v, FormatVersion)
	}
	var rb rebuilder
	err := eachFramed(body[headLen:], func(r Record) error { return rb.add(r) })
	if err != nil {
		return nil, err
	}
	s, err := rb.session()
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no records", ErrCorruptState)
	}
	return s, nil
}

// eachRecord calls yield with every record of the session, in a canonical
// order (same session, same records in the same order). The record's
// bytes are valid only during the call.
func (s *MqttState) eachRecord(buf []byte, yield func(Record) error) error {
	emit := func(k Kind, keyLen int) error {
		return yield(Record{Kind: k, Key: buf[:keyLen], Value: buf[keyLen:]})
	}
	buf = append(buf[:0], identityKey...)
	buf = s.appendIdentity(buf)
	if err := emit(KindMeta, len(identityKey)); err != nil {
		return err
	}
	buf = append(buf[:0], countersKey...)
	buf = s.appendCounters(buf)
	if err := emit(KindMeta, len(countersKey)); err != nil {
		return err
	}
	for _, f := range slices.Sorted(s.subscriptions.Keys()) {
		sb, _ := s.subscriptions.Get(f)
		buf = append(buf[:0], f...)
		buf = appendSubscription(buf, sb)
		if err := emit(KindSubscription, len(f)); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(s.incomingQoS2.Keys()) {
		sent, _ := s.incomingQoS2.Get(id)
		buf = appendIDKey(buf[:0], id)
		buf = appendIncomingQoS2(buf, sent)
		if err := emit(KindIncomingQoS2, 2); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(s.unackedQoS1.Keys()) {
		buf = appendIDKey(buf[:0], id)
		if err := emit(KindUnackedQoS1, 2); err != nil {
			return err
		}
	}
	for _, o := range s.InFlightPublishes() {
		buf = appendIDKey(buf[:0], o.Publish.PacketID)
		buf = appendInFlight(buf, &o)
		if err := emit(KindInFlight, 2); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(s.subscribing.Keys()) {
		r, _ := s.subscribing.Get(id)
		buf = appendIDKey(buf[:0], id)
		buf = appendSubscribing(buf, r)
		if err := emit(KindSubscribing, 2); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(s.unsubscribing.Keys()) {
		r, _ := s.unsubscribing.Get(id)
		buf = appendIDKey(buf[:0], id)
		buf = appendUnsubscribing(buf, r)
		if err := emit(KindUnsubscribing, 2); err != nil {
			return err
		}
	}
	for key, p := range s.queue.All() {
		buf = appendQueueKey(buf[:0], key)
		buf = appendQueued(buf, p)
		if err := emit(KindQueued, 8); err != nil {
			return err
		}
	}
	return s.eachSpooled(yield)
}

// Encoding of record keys and values (FORMAT.md).

func appendIDKey(b []byte, id uint16) []byte { return binary.BigEndian.AppendUint16(b, id) }

// appendQueueKey encodes a queue position so that byte order is numeric
// order (the sign bit flipped).
func appendQueueKey(b []byte, k int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(k)^(1<<63))
}

func (s *MqttState) appendIdentity(b []byte) []byte {
	b = appendString(b, s.identity.Server)
	return appendString(b, s.identity.ClientID)
}

func (s *MqttState) appendCounters(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, s.nextID)
	return binary.AppendUvarint(b, s.seq)
}

func appendInFlight(b []byte, o *Outgoing) []byte {
	b = append(b, byte(o.Stage))
	b = binary.AppendUvarint(b, o.seq)
	return appendPublish(b, o.Publish, o.topic)
}

const flagResubscribe = 1

func appendSubscribing(b []byte, r sentRequest) []byte {
	b = binary.AppendUvarint(b, r.seq)
	var flags byte
	if isResubscribe(r.Pending) {
		flags |= flagResubscribe
	}
	b = append(b, flags)
	return appendSubscribe(b, r.Packet.(*packets.Subscribe))
}

func appendUnsubscribing(b []byte, r sentRequest) []byte {
	b = binary.AppendUvarint(b, r.seq)
	return appendUnsubscribe(b, r.Packet.(*packets.Unsubscribe))
}

// Request types of queued records.
const (
	queuedPublish     = 1
	queuedSubscribe   = 2
	queuedUnsubscribe = 3
)

func appendQueued(b []byte, p Pending) []byte {
	switch pk := p.Packet.(type) {
	case *packets.Publish:
		if p.Expires.IsZero() {
			return appendPublish(append(b, queuedPublish, 0), pk, "")
		}
		b = binary.BigEndian.AppendUint64(append(b, queuedPublish, flagExpires), uint64(p.Expires.UnixMilli()))
		return appendPublish(b, pk, "")
	case *packets.Subscribe:
		var flags byte
		if isResubscribe(p) {
			flags |= flagResubscribe
		}
		return appendSubscribe(append(b, queuedSubscribe, flags), pk)
	case *packets.Unsubscribe:
		return appendUnsubscribe(append(b, queuedUnsubscribe, 0), pk)
	}
	// NextToSend refuses anything else; keep the record decodable so
	// the rest of the session survives: an empty UNSUBSCRIBE.
	return appendUnsubscribe(append(b, queuedUnsubscribe, 0), &packets.Unsubscribe{})
}

func appendIncomingQoS2(b []byte, pubrecSent bool) []byte {
	if pubrecSent {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendSubscription(b []byte, sb subscription) []byte {
	b = append(b, packOptions(sb.opts))
	return binary.AppendUvarint(b, uint64(max(sb.id, 0)))
}

// Publish flags.
const (
	pubQoSMask   = 0x03
	pubRetain    = 0x04
	pubDuplicate = 0x08
	pubFlagsMask = 0x0f
)

// appendPublish encodes a PUBLISH without its packet id (the record key
// holds it) and without a topic alias: topic replaces an empty topic.
func appendPublish(b []byte, p *packets.Publish, topic string) []byte {
	flags := p.QoS & pubQoSMask
	if p.Retain {
		flags |= pubRetain
	}
	if p.Duplicate {
		flags |= pubDuplicate
	}
	b = append(b, flags)
	t := p.Topic
	if t == "" {
		t = topic
	}
	b = appendString(b, t)
	b = appendNilBytes(b, p.Payload)
	return appendProps(b, p.Properties)
}

func appendSubscribe(b []byte, p *packets.Subscribe) []byte {
	b = appendProps(b, p.Properties)
	b = appendCount(b, p.Subscriptions == nil, len(p.Subscriptions))
	for _, o := range p.Subscriptions {
		b = appendString(b, o.Topic)
		b = append(b, packOptions(o))
	}
	return b
}

func appendUnsubscribe(b []byte, p *packets.Unsubscribe) []byte {
	b = appendProps(b, p.Properties)
	b = appendCount(b, p.Topics == nil, len(p.Topics))
	for _, t := range p.Topics {
		b = appendString(b, t)
	}
	return b
}

// packOptions is the SUBSCRIBE options byte of the wire.
func packOptions(o packets.SubOptions) byte {
	b := o.QoS & 0x03
	if o.NoLocal {
		b |= 0x04
	}
	if o.RetainAsPublished {
		b |= 0x08
	}
	return b | (o.RetainHandling&0x03)<<4
}

func unpackOptions(topic string, b byte) (packets.SubOptions, bool) {
	return packets.SubOptions{
		Topic:             topic,
		QoS:               b & 0x03,
		NoLocal:           b&0x04 != 0,
		RetainAsPublished: b&0x08 != 0,
		RetainHandling:    (b >> 4) & 0x03,
	}, b&0xc0 == 0
}

// Property presence bits.
const (
	propPresent       = 1 << 0
	propPayloadFormat = 1 << 1
	propMessageExpiry = 1 << 2
	propSubID         = 1 << 3
	propMask          = 0x0f
)

// appendProps encodes the properties a PUBLISH, SUBSCRIBE or UNSUBSCRIBE
// carries on the wire, except the topic alias.
func appendProps(b []byte, p *packets.Properties) []byte {
	if p == nil {
		return append(b, 0)
	}
	var mask byte = propPresent
	if p.PayloadFormat != nil {
		mask |= propPayloadFormat
	}
	if p.MessageExpiry != nil {
		mask |= propMessageExpiry
	}
	if p.SubscriptionIdentifier != nil {
		mask |= propSubID
	}
	b = append(b, mask)
	if p.PayloadFormat != nil {
		b = append(b, *p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		b = binary.BigEndian.AppendUint32(b, *p.MessageExpiry)
	}
	if p.SubscriptionIdentifier != nil {
		b = binary.AppendVarint(b, int64(*p.SubscriptionIdentifier))
	}
	b = appendString(b, p.ContentType)
	b = appendString(b, p.ResponseTopic)
	b = appendNilBytes(b, p.CorrelationData)
	b = appendCount(b, p.User == nil, len(p.User))
	for _, u := range p.User {
		b = appendString(b, u.Key)
		b = appendString(b, u.Value)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendNilBytes encodes a byte slice as its length + 1, or 0 for nil.
func appendNilBytes(b, v []byte) []byte {
	b = appendCount(b, v == nil, len(v))
	return append(b, v...)
}

// appendCount encodes a slice length as n + 1, or 0 for a nil slice.
func appendCount(b []byte, isNil bool, n int) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

// dec reads the encoding; any read past the end or malformed number sets
// bad and returns zero values, so callers check once at the end.
type dec struct {
	b   []byte
	bad bool
}

func (d *dec) fail() { d.bad, d.b = true, nil }

func (d *dec) u8() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) u16() uint16 {
	if len(d.b) < 2 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *dec) u32() uint32 {
	if len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// raw returns the next n bytes, aliasing the input.
func (d *dec) raw(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.raw(d.uvarint())) }

// count reads a length encoded by appendCount; each element needs at
// least minSize bytes, so a count the input cannot hold is refused before
// anything is allocated for it.
func (d *dec) count(minSize int) (n int, isNil bool) {
	v := d.uvarint()
	if v == 0 {
		return 0, true
	}
	if v-1 > uint64(len(d.b)/minSize) {
		d.fail()
		return 0, true
	}
	return int(v - 1), false
}

func (d *dec) nilBytes() []byte {
	n, isNil := d.count(1)
	if isNil {
		return nil
	}
	return bytes.Clone(d.raw(uint64(n)))
}

// end reports whether everything was read without error.
func (d *dec) end() bool { return !d.bad && len(d.b) == 0 }

func (d *dec) props() *packets.Properties {
	mask := d.u8()
	if mask == 0 {
		return nil
	}
	if mask&^propMask != 0 || mask&propPresent == 0 {
		d.fail()
		return nil
	}
	p := &packets.Properties{}
	if mask&propPayloadFormat != 0 {
		v := d.u8()
		p.PayloadFormat = &v
	}
	if mask&propMessageExpiry != 0 {
		v := d.u32()
		p.MessageExpiry = &v
	}
	if mask&propSubID != 0 {
		v := d.varint()
		if int64(int(v)) != v {
			d.fail()
		}
		id := int(v)
		p.SubscriptionIdentifier = &id
	}
	p.ContentType = d.str()
	p.ResponseTopic = d.str()
	p.CorrelationData = d.nilBytes()
	if n, isNil := d.count(2); !isNil {
		p.User = make([]packets.User, 0, n)
		for range n {
			p.User = append(p.User, packets.User{Key: d.str(), Value: d.str()})
		}
	}
	return p
}

func (d *dec) publish() *packets.Publish {
	flags := d.u8()
	if flags&^pubFlagsMask != 0 || flags&pubQoSMask == 3 {
		d.fail()
		return nil
	}
	p := &packets.Publish{
		QoS:       flags & pubQoSMask,
		Retain:    flags&pubRetain != 0,
		Duplicate: flags&pubDuplicate != 0,
	}
	p.Topic = d.str()
	p.Payload = d.nilBytes()
	p.Properties = d.props()
	return p
}

func (d *dec) subscribe() *packets.Subscribe {
	p := &packets.Subscribe{Properties: d.props()}
	if n, isNil := d.count(2); !isNil {
		p.Subscriptions = make([]packets.SubOptions, 0, n)
		for range n {
			o, ok := unpackOptions(d.str(), d.u8())
			if !ok {
				d.fail()
			}
			p.Subscriptions = append(p.Subscriptions, o)
		}
	}
	return p
}

func (d *dec) unsubscribe() *packets.Unsubscribe {
	p := &packets.Unsubscribe{Properties: d.props()}
	if n, isNil := d.count(1); !isNil {
		p.Topics = make([]string, 0, n)
		for range n {
			p.Topics = append(p.Topics, d.str())
		}
	}
	return p
}

// rebuilder rebuilds a session from its records, for Load and LoadStore:
// add every record, in any order, then call session. It copies what it
// keeps, so the records' bytes may be reused after add returns. Use one
// for one session only.
type rebuilder struct {
	s       *MqttState
	records int
	// haveIdentity and haveCounters: the meta records were added.
	haveIdentity, haveCounters bool
	queued                     []tracked.Entry[Pending]
}

// corrupt describes a damaged record. The key is shown in part: a damaged
// length may make it as large as the input.
func corrupt(r Record, why string) error {
	return fmt.Errorf("%w: %s record %s: %s", ErrCorruptState, r.Kind, keyText(r.Key), why)
}

// keyText quotes the start of a key, at most 32 bytes of it, and says how
// long it is when that is not all.
func keyText(k []byte) string {
	const show = 32
	if len(k) <= show {
		return fmt.Sprintf("%q", k)
	}
	return fmt.Sprintf("%q… (%d bytes)", k[:show], len(k))
}

// add adds one record. An error wraps ErrCorruptState (the record is
// malformed, or a duplicate).
func (b *rebuilder) add(r Record) error {
	if err := b.add1(r); err != nil {
		return err
	}
	b.records++
	return nil
}

func (b *rebuilder) add1(r Record) error {
	if b.s == nil {
		b.s = New(Config{})
	}
	s := b.s
	d := dec{b: r.Value}
	var id uint16
	switch r.Kind {
	case KindInFlight, KindSubscribing, KindUnsubscribing, KindIncomingQoS2, KindUnackedQoS1:
		if len(r.Key) != 2 {
			return corrupt(r, "key is not a packet id")
		}
		if id = binary.BigEndian.Uint16(r.Key); id == 0 {
			return corrupt(r, "packet id 0")
		}
	}
	switch r.Kind {
	case KindMeta:
		switch string(r.Key) {
		case identityKey:
			if b.haveIdentity {
				return corrupt(r, "duplicate")
			}
			b.haveIdentity = true
			s.identity = Identity{Server: d.str(), ClientID: d.str()}
		case countersKey:
			if b.haveCounters {
				return corrupt(r, "duplicate")
			}
			b.haveCounters = true
			s.nextID = d.u16()
			s.seq = d.uvarint()
		default:
			return corrupt(r, "unknown key")
		}
	case KindInFlight, KindSubscribing, KindUnsubscribing:
		if _, dup := s.inUse[id]; dup {
			return corrupt(r, "packet id already in use")
		}
		switch r.Kind {
		case KindInFlight:
			stage := Stage(d.u8())
			seq := d.uvarint()
			p := d.publish()
			if d.bad {
				break
			}
			if p.QoS == 0 || stage > AwaitingComplete || (stage == AwaitingComplete && p.QoS != 2) {
				return corrupt(r, fmt.Sprintf("QoS %d publish at stage %d", p.QoS, stage))
			}
			p.PacketID = id
			s.outgoing.Set(id, &Outgoing{Publish: p, Stage: stage, seq: seq, topic: p.Topic})
		case KindSubscribing:
			seq := d.uvarint()
			flags := d.u8()
			p := d.subscribe()
			if flags&^flagResubscribe != 0 {
				return corrupt(r, "unknown flags")
			}
			if d.bad {
				break
			}
			p.PacketID = id
			req := sentRequest{Pending{Packet: p}, seq}
			if flags&flagResubscribe != 0 {
				req.Tag = Resubscribe{}
			}
			s.subscribing.Set(id, req)
		case KindUnsubscribing:
			seq := d.uvarint()
			p := d.unsubscribe()
			if d.bad {
				break
			}
			p.PacketID = id
			s.unsubscribing.Set(id, sentRequest{Pending{Packet: p}, seq})
		}
		s.inUse[id] = struct{}{}
	case KindQueued:
		key, p, ok := decodeQueuedKey(r.Key)
		if !ok {
			return corrupt(r, "key is not a queue position in range")
		}
		if !decodeQueued(&d, &p) {
			return corrupt(r, "unknown request type")
		}
		b.queued = append(b.queued, tracked.Entry[Pending]{Key: key, Value: p})
	case KindIncomingQoS2:
		if s.incomingQoS2.Has(id) {
			return corrupt(r, "duplicate")
		}
		switch d.u8() {
		case 0:
			s.incomingQoS2.Set(id, false)
			if s.undelivered == nil {
				s.undelivered = make(map[uint16]struct{})
			}
			s.undelivered[id] = struct{}{}
		case 1:
			s.incomingQoS2.Set(id, true)
		default:
			return corrupt(r, "bad PUBREC flag")
		}
	case KindUnackedQoS1:
		if s.unackedQoS1.Has(id) {
			return corrupt(r, "duplicate")
		}
		s.unackedQoS1.Set(id, struct{}{})
	case KindSubscription:
		if len(r.Key) == 0 {
			return corrupt(r, "empty topic filter")
		}
		f := string(r.Key)
		if s.subscriptions.Has(f) {
			return corrupt(r, "duplicate")
		}
		opts, ok := unpackOptions(f, d.u8())
		subID := d.uvarint()
		if !ok || subID > maxSubscriptionID {
			return corrupt(r, "bad options")
		}
		s.subscriptions.Set(f, subscription{opts: opts, id: int(subID)})
	default:
		return corrupt(r, "unknown kind")
	}
	if !d.end() {
		return corrupt(r, "malformed value")
	}
	return nil
}

// maxSubscriptionID is the largest subscription identifier (a variable
// byte integer).
const maxSubscriptionID = 268435455

// session checks the records added as a whole and returns the session:
// nil and no error when no record was added (an empty store). An error
// wraps ErrCorruptState.
func (b *rebuilder) session() (*MqttState, error) {
	if b.records == 0 {
		return nil, nil
	}
	s := b.s
	if !b.haveIdentity || !b.haveCounters {
		return nil, fmt.Errorf("%w: identity or counters record missing", ErrCorruptState)
	}
	// Send sequences are unique and below the counter, so that new sends
	// come after.
	seqs := make(map[uint64]struct{}, len(s.inUse))
	checkSeq := func(seq uint64) error {
		if _, dup := seqs[seq]; dup || seq == 0 || seq > s.seq {
			return fmt.Errorf("%w: send sequence %d duplicate or beyond the counter %d", ErrCorruptState, seq, s.seq)
		}
		seqs[seq] = struct{}{}
		return nil
	}
	for _, o := range s.outgoing.All() {
		if err := checkSeq(o.seq); err != nil {
			return nil, err
		}
	}
	for _, m := range []*tracked.Map[uint16, sentRequest]{&s.subscribing, &s.unsubscribing} {
		for _, r := range m.All() {
			if err := checkSeq(r.seq); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(b.queued, func(x, y tracked.Entry[Pending]) int { return cmp.Compare(x.Key, y.Key) })
	for i := 1; i < len(b.queued); i++ {
		if b.queued[i].Key == b.queued[i-1].Key {
			return nil, fmt.Errorf("%w: two queued requests at position %d", ErrCorruptState, b.queued[i].Key)
		}
	}
	s.queue.Restore(b.queued)
	b.s, b.queued = nil, nil
	return s, nil
}

// appendFramed appends a record in the framing of FORMAT.md: kind, key
// length, key, value length, value.
func appendFramed(b []byte, r Record) []byte {
	b = append(b, byte(r.Kind))
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = binary.AppendUvarint(b, uint64(len(r.Value)))
	return append(b, r.Value...)
}

// eachFramed calls fn with each record framed in data, the records'
// bytes aliasing data. A framing error wraps ErrCorruptState.
func eachFramed(data []byte, fn func(Record) error) error {
	d := dec{b: data}
	for len(d.b) > 0 {
		k := Kind(d.u8())
		key := d.raw(d.uvarint())
		val := d.raw(d.uvarint())
		if d.bad {
			return fmt.Errorf("%w: record framing", ErrCorruptState)
		}
		if err := fn(Record{Kind: k, Key: key, Value: val}); err != nil {
			return err
		}
	}
	return nil
}

// flagExpires (queued PUBLISH records): an 8-byte deadline, Unix time in
// milliseconds, follows the flags (Pending.Expires).
const flagExpires = 2

// decodeQueuedKey decodes the key of a queued record; ok is false for a
// key that is not a queue position we could have written.
func decodeQueuedKey(k []byte) (key int64, p Pending, ok bool) {
	if len(k) != 8 {
		return 0, p, false
	}
	key = int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
	// Positions are assigned one by one from 0 in both directions:
	// anywhere near the ends of int64 they were not written by us.
	return key, p, key >= -1<<62 && key < 1<<62
}

// decodeQueued decodes the value of a queued record into p; false for an
// unknown request type or flags (the caller checks d for the rest).
func decodeQueued(d *dec, p *Pending) bool {
	typ, flags := d.u8(), d.u8()
	switch {
	case typ == queuedPublish && flags&^flagExpires == 0:
		if flags&flagExpires != 0 {
			hi, lo := d.u32(), d.u32()
			ms := int64(uint64(hi)<<32 | uint64(lo))
			if ms <= 0 {
				return false
			}
			p.Expires = time.UnixMilli(ms)
		}
		p.Packet = d.publish()
	case typ == queuedSubscribe && flags&^flagResubscribe == 0:
		p.Packet = d.subscribe()
		if flags&flagResubscribe != 0 {
			p.Tag = Resubscribe{}
		}
	case typ == queuedUnsubscribe && flags == 0:
		p.Packet = d.unsubscribe()
	default:
		return false
	}
	return true
}
