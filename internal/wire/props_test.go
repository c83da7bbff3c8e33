package wire

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// TestDecodeSubscriptionIDs: a message that matched several subscriptions
// carries several Subscription Identifiers; every one is kept, in order
// (issue 9, finding 9: paho's model keeps only the last).
func TestDecodeSubscriptionIDs(t *testing.T) {
	b := []byte{0x30, 0x09, 0x00, 0x01, 't', 0x04, 0x0b, 0x01, 0x0b, 0x02, 'x'}
	pkt, err := Decode(split(t, b))
	if err != nil {
		t.Fatal(err)
	}
	p := pkt.Content.(*packets.Publish)
	if !slices.Equal(pkt.SubscriptionIDs(), []int{1, 2}) {
		t.Fatalf("SubscriptionIDs = %v, want [1 2]", pkt.SubscriptionIDs())
	}
	if p.Properties == nil || p.Properties.SubscriptionIdentifier == nil || *p.Properties.SubscriptionIdentifier != 1 {
		t.Fatalf("Properties.SubscriptionIdentifier does not point at the first: %+v", p.Properties)
	}
	if p.Topic != "t" || string(p.Payload) != "x" {
		t.Fatalf("decoded %s", desc(p))
	}
	// A SUBSCRIBE carries at most one.
	if _, err := Decode(0x82, []byte{0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, 't', 0}); !errors.Is(err, ErrMalformedPacket) {
		t.Fatalf("SUBSCRIBE with two subscription identifiers: %v", err)
	}
}

// TestDecodeUserProps: user properties come in Packet.User, in order,
// duplicates and empty strings included, and Properties.User stays nil.
func TestDecodeUserProps(t *testing.T) {
	users := []packets.User{{Key: "a", Value: "1"}, {Key: "", Value: ""}, {Key: "a", Value: "2"}, {Key: "ünï", Value: "cödé"}}
	pr := &packets.Properties{ContentType: "text/plain", User: users}
	for _, p := range []packets.Packet{
		&packets.Publish{Topic: "t", QoS: 1, PacketID: 3, Properties: pr, Payload: []byte("p")},
		&packets.Puback{PacketID: 3, Properties: &packets.Properties{User: users}},
		&packets.Suback{PacketID: 3, Reasons: []byte{1}, Properties: &packets.Properties{User: users}},
		&packets.Disconnect{ReasonCode: 0x8E, Properties: &packets.Properties{User: users}},
		&packets.Connack{Properties: &packets.Properties{User: users}},
	} {
		pkt, err := Decode(split(t, mustAppend(t, p)))
		if err != nil {
			t.Fatalf("%T: %v", p, err)
		}
		if got := pkt.User().Users(); !reflect.DeepEqual(got, users) {
			t.Errorf("%T: User = %v, want %v", p, got, users)
		}
		if pkt.User().Len() != len(users) {
			t.Errorf("%T: Len = %d", p, pkt.User().Len())
		}
		if u := propsOf(pkt.Content).User; u != nil {
			t.Errorf("%T: Properties.User = %v, want nil", p, u)
		}
	}
}

func TestUserProps(t *testing.T) {
	var b []byte
	long := string(bytes.Repeat([]byte{'v'}, 300)) // a two-byte uvarint length
	for _, kv := range [][2]string{{"k", "v"}, {"", ""}, {"k", long}} {
		b = AppendUserProp(b, kv[0], kv[1])
	}
	u := UserProps(b)
	want := []packets.User{{Key: "k", Value: "v"}, {}, {Key: "k", Value: long}}
	if got := u.Users(); !reflect.DeepEqual(got, want) || u.Len() != 3 {
		t.Fatalf("Users = %v (Len %d)", got, u.Len())
	}
	n := 0
	for range u.All() {
		n++
		break // stopping early is allowed
	}
	if n != 1 {
		t.Fatal("All does not stop")
	}
	var empty UserProps
	if empty.Len() != 0 || empty.Users() != nil {
		t.Fatal("the zero UserProps is not empty")
	}
	// A damaged encoding ends the list; it never panics.
	for i := range len(b) {
		_ = UserProps(b[:i]).Users()
	}
	if got := UserProps(b[:len(b)-1]).Len(); got != 2 {
		t.Fatalf("cut list: %d pairs, want the 2 complete ones", got)
	}
}

// TestDecodePropertyRules: what MQTT 5 calls a protocol error in a
// property is refused: a property twice that may appear once, a value out
// of its range, a property the packet cannot carry, bad UTF-8.
func TestDecodePropertyRules(t *testing.T) {
	pub := func(props ...byte) []byte { // a QoS 0 PUBLISH to "t" with these properties
		body := append([]byte{0, 1, 't'}, vbi.Append(nil, len(props))...)
		return append([]byte{0x30}, append(vbi.Append(nil, len(body)+len(props)), append(body, props...)...)...)
	}
	connack := func(props ...byte) []byte {
		body := append([]byte{0, 0}, vbi.Append(nil, len(props))...)
		return append([]byte{0x20}, append(vbi.Append(nil, len(body)+len(props)), append(body, props...)...)...)
	}
	cases := map[string][]byte{
		"content type twice":          pub(0x03, 0, 1, 'a', 0x03, 0, 1, 'b'),
		"payload format 2":            pub(0x01, 2),
		"subscription identifier 0":   pub(0x0b, 0),
		"will delay in a PUBLISH":     pub(0x18, 0, 0, 0, 1),
		"reason string in a PUBLISH":  pub(0x1f, 0, 1, 'r'),
		"unknown property":            pub(0x7f, 0),
		"property id beyond 63":       pub(0xC1, 0),
		"user property bad UTF-8":     pub(0x26, 0, 1, 0xff, 0, 0),
		"user property with U+0000":   pub(0x26, 0, 0, 0, 1, 0),
		"user property cut":           pub(0x26, 0, 1, 'k', 0),
		"content type bad UTF-8":      pub(0x03, 0, 1, 0xC3),
		"message expiry cut":          pub(0x02, 0, 0, 1),
		"receive maximum 0":           connack(0x21, 0, 0),
		"maximum packet size 0":       connack(0x27, 0, 0, 0, 0),
		"maximum QoS 2":               connack(0x24, 2),
		"retain available 2":          connack(0x25, 2),
		"receive maximum twice":       connack(0x21, 0, 1, 0x21, 0, 1),
		"CONNACK reserved flags":      {0x20, 3, 0x02, 0, 0},
		"UNSUBACK without reasons":    {0xB0, 3, 0, 1, 0},
		"SUBSCRIBE retain handling 3": {0x82, 7, 0, 1, 0, 0, 1, 't', 0x30},
		"SUBSCRIBE reserved bits":     {0x82, 7, 0, 1, 0, 0, 1, 't', 0x40},
	}
	for name, b := range cases {
		if pkt, err := Decode(split(t, b)); !errors.Is(err, ErrMalformedPacket) {
			t.Errorf("%s (% x): %v, %v; want ErrMalformedPacket", name, b, pkt, err)
		}
	}
	// The boundaries are accepted.
	for name, b := range map[string][]byte{
		"payload format 1":           pub(0x01, 1),
		"several user properties":    pub(0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0),
		"largest subscription id":    pub(append([]byte{0x0b}, vbi.Append(nil, vbi.Max)...)...),
		"maximum QoS 1":              connack(0x24, 1),
		"receive maximum 1":          connack(0x21, 0, 1),
		"topic alias maximum 0":      connack(0x22, 0, 0),
		"topic alias 0 (the loop's)": pub(0x23, 0, 0),
		"empty content type":         pub(0x03, 0, 0),
		"empty correlation data":     pub(0x09, 0, 0),
		"server keep alive 0":        connack(0x13, 0, 0),
		"session expiry 0xFFFFFFFF":  connack(0x11, 0xff, 0xff, 0xff, 0xff),
		"subscription identifiers 3": pub(0x0b, 1, 0x0b, 1, 0x0b, 0x80, 0x01),
	} {
		if _, err := Decode(split(t, b)); err != nil {
			t.Errorf("%s (% x): %v", name, b, err)
		}
	}
}

// TestWillPropertiesOnTheWire: every will property reaches the wire as a
// will property, byte for byte (issue 9, finding 8: paho packs will
// properties as CONNECT properties, which drops all but will delay and
// user properties: `07 26 00 01 6b 00 01 76`).
func TestWillPropertiesOnTheWire(t *testing.T) {
	c := &packets.Connect{
		ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "c", KeepAlive: 60, CleanStart: true,
		WillFlag: true, WillQOS: 1, WillTopic: "w", WillMessage: []byte("bye"),
		WillProperties: &packets.Properties{
			PayloadFormat:     ptr(byte(1)),
			MessageExpiry:     ptr(uint32(300)),
			ContentType:       "t",
			ResponseTopic:     "r",
			CorrelationData:   []byte{0xC0},
			WillDelayInterval: ptr(uint32(5)),
			User:              []packets.User{{Key: "k", Value: "v"}},
		},
		Properties: &packets.Properties{SessionExpiryInterval: ptr(uint32(60))},
	}
	willProps := []byte{
		0x01, 1, // payload format: UTF-8
		0x02, 0, 0, 0x01, 0x2C, // message expiry 300 s
		0x03, 0, 1, 't', // content type
		0x08, 0, 1, 'r', // response topic
		0x09, 0, 1, 0xC0, // correlation data
		0x18, 0, 0, 0, 5, // will delay 5 s
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02|0x04|1<<3, 0, 60)
	body = append(body, 5, 0x11, 0, 0, 0, 60) // CONNECT properties: session expiry
	body = append(body, 0, 1, 'c')
	body = append(body, byte(len(willProps)))
	body = append(body, willProps...)
	body = append(body, 0, 1, 'w', 0, 3, 'b', 'y', 'e')
	want := append([]byte{0x10, byte(len(body))}, body...)
	got := mustAppend(t, c)
	if !bytes.Equal(got, want) {
		t.Fatalf("CONNECT\n got % x\nwant % x", got, want)
	}
	// paho's encoding, for the record: the will properties it writes.
	if paho := pahoBytes(t, c); bytes.Equal(paho, want) {
		t.Log("paho now encodes will properties correctly")
	}
	// And it decodes back to the same will.
	pkt, err := Decode(split(t, got))
	if err != nil {
		t.Fatal(err)
	}
	if back := pkt.Content.(*packets.Connect); !reflect.DeepEqual(back.WillProperties, c.WillProperties) ||
		!reflect.DeepEqual(back.Properties, c.Properties) {
		t.Fatalf("decoded will properties %+v, CONNECT properties %+v", back.WillProperties, back.Properties)
	}
	// A property a will cannot carry is refused, not dropped.
	c.WillProperties = &packets.Properties{TopicAlias: ptr(uint16(1))}
	if _, err := AppendPacket(nil, c, 0); !errors.Is(err, ErrInvalidPacket) {
		t.Fatalf("will with a topic alias: %v", err)
	}
}

func TestReaderRefusesClientPackets(t *testing.T) {
	for _, p := range []packets.Packet{
		&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "c"},
		&packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "t"}}},
		&packets.Unsubscribe{PacketID: 1, Topics: []string{"t"}},
		&packets.Pingreq{},
	} {
		b := mustAppend(t, p)
		rd := NewReader(0)
		// Only the fixed header: refused before the body arrives.
		if _, err := rd.FillNow(&memConn{chunks: [][]byte{b[:2]}}); err != nil {
			t.Fatal(err)
		}
		if pkt, err := rd.Next(); !errors.Is(err, ErrMalformedPacket) {
			t.Errorf("%T: %v, %v; want ErrMalformedPacket", p, pkt, err)
		}
	}
}

// heapShape is a worst case for the memory a decoded packet costs.
type heapShape struct {
	name string
	pkt  func(size int) []byte // a whole packet of about size bytes
}

// withProps returns a packet of type header with the body prefix pre,
// then a property block filled with copies of prop up to about size
// bytes, then the suffix post.
func withProps(header byte, pre []byte, prop []byte, size int, post []byte) []byte {
	var block []byte
	if len(prop) > 0 {
		block = bytes.Repeat(prop, size/len(prop))
	}
	body := append(slices.Clone(pre), vbi.Append(nil, len(block))...)
	body = append(body, block...)
	body = append(body, post...)
	return append(append([]byte{header}, vbi.Append(nil, len(body))...), body...)
}

// heapShapes are the shapes of issue 9, finding 3, and their siblings.
func heapShapes() []heapShape {
	emptyUser := []byte{0x26, 0, 0, 0, 0}
	shortUser := []byte{0x26, 0, 1, 'k', 0, 1, 'v'}
	pubPre := []byte{0, 1, 't', 0, 1} // topic "t", QoS 1 packet id 1
	return []heapShape{
		{"PUBLISH payload", func(n int) []byte {
			return withProps(0x32, pubPre, nil, 0, make([]byte, n))
		}},
		{"PUBLISH empty user properties", func(n int) []byte { return withProps(0x32, pubPre, emptyUser, n, nil) }},
		{"PUBLISH 1-byte user properties", func(n int) []byte { return withProps(0x32, pubPre, shortUser, n, nil) }},
		{"PUBLISH subscription identifiers", func(n int) []byte { return withProps(0x32, pubPre, []byte{0x0b, 1}, n, nil) }},
		{"PUBACK user properties", func(n int) []byte { return withProps(0x40, []byte{0, 1, 0}, emptyUser, n, nil) }},
		{"PUBREL user properties", func(n int) []byte { return withProps(0x62, []byte{0, 1, 0}, emptyUser, n, nil) }},
		{"SUBACK user properties", func(n int) []byte { return withProps(0x90, []byte{0, 1}, emptyUser, n, []byte{0}) }},
		{"SUBACK reason codes", func(n int) []byte { return withProps(0x90, []byte{0, 1}, nil, 0, make([]byte, n)) }},
		{"UNSUBACK user properties", func(n int) []byte { return withProps(0xB0, []byte{0, 1}, emptyUser, n, []byte{0}) }},
		{"CONNACK user properties", func(n int) []byte { return withProps(0x20, []byte{0, 0}, emptyUser, n, nil) }},
		{"DISCONNECT user properties", func(n int) []byte { return withProps(0xE0, []byte{0x8E}, emptyUser, n, nil) }},
		{"AUTH user properties", func(n int) []byte { return withProps(0xF0, []byte{0x18}, emptyUser, n, nil) }},
	}
}

// allocated returns the bytes the heap allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Heap bounds, as multiples of the packet's size (see docs/journal.md,
// issue 9, finding 3): decoding allocates at most decodeBound times the
// packet, plus a constant (the worst shape is a PUBLISH of subscription
// identifiers: 8 bytes of []int for each 2 on the wire); framing it
// through a Reader adds the buffer the Reader grows for it, doubling from
// 64 KiB as bytes arrive: at most three times the packet allocated in
// all, twice live.
const (
	decodeBound = 4
	readerBound = decodeBound + 3
)

// TestDecodeHeapBound measures the heap that decoding the worst shapes of
// packets costs, alone and through a Reader, and checks the bounds. The
// ratios are logged (go test -run TestDecodeHeapBound -v).
func TestDecodeHeapBound(t *testing.T) {
	size := 4 << 20
	if raceEnabled {
		size = 512 << 10
	}
	slack := size/16 + 64<<10 // the constant: packet and bookkeeping structs, GC noise
	for _, s := range heapShapes() {
		b := s.pkt(size)
		n := len(b)
		header, body := split(t, b)
		var pkt *Packet
		var err error
		dec := allocated(func() { pkt, err = Decode(header, body) })
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		runtime.KeepAlive(pkt)
		var rdAlloc uint64
		rdAlloc = allocated(func() {
			rd := NewReader(0)
			c := &memConn{chunks: chunks(b, 64<<10), eof: true}
			got := drain(t, rd, c)
			if len(got) != 1 {
				t.Fatalf("%s: %d packets through the Reader", s.name, len(got))
			}
		})
		t.Logf("%-34s %8d bytes: Decode allocates %5.2f×, Reader %5.2f×", s.name, n, float64(dec)/float64(n), float64(rdAlloc)/float64(n))
		if dec > uint64(decodeBound*n+slack) {
			t.Errorf("%s: Decode allocated %d bytes for a packet of %d (%.1f×, bound %d×)", s.name, dec, n, float64(dec)/float64(n), decodeBound)
		}
		if rdAlloc > uint64(readerBound*n+slack) {
			t.Errorf("%s: Reader allocated %d bytes for a packet of %d (%.1f×, bound %d×)", s.name, rdAlloc, n, float64(rdAlloc)/float64(n), readerBound)
		}
	}
}

// BenchmarkDecodeShapes measures decoding the heap shapes at 64 KiB, for
// time per byte (the bound test measures memory).
func BenchmarkDecodeShapes(b *testing.B) {
	for _, s := range heapShapes() {
		enc := s.pkt(64 << 10)
		header, body := split(b, enc)
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				pktSink, _ = Decode(header, body)
			}
		})
	}
}
