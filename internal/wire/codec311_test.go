package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// wire311 is one MQTT 3.1.1 packet in both forms: the struct Decode311
// returns and the bytes AppendPacket311 writes, worked out by hand from the
// MQTT 3.1.1 specification (section numbers in the names).
type wire311 struct {
	name string
	pkt  packets.Packet
	wire []byte
}

func cases311() []wire311 {
	return []wire311{
		{"3.1 CONNECT minimal, clean session", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, ClientID: "c", KeepAlive: 60, CleanStart: true},
			[]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 1, 'c'}},
		{"3.1 CONNECT persistent session, empty client id", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, KeepAlive: 0x1234},
			[]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0x12, 0x34, 0, 0}},
		{"3.1 CONNECT will QoS 2 retained, user name, password", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, ClientID: "id", KeepAlive: 10,
			WillFlag: true, WillQOS: 2, WillRetain: true, WillTopic: "w/t", WillMessage: []byte{0, 0xFF},
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw")},
			[]byte{0x10, 30, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x80 | 0x40 | 0x20 | 2<<3 | 0x04, 0, 10,
				0, 2, 'i', 'd', 0, 3, 'w', '/', 't', 0, 2, 0, 0xFF, 0, 1, 'u', 0, 2, 'p', 'w'}},
		{"3.1 CONNECT user name only", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 4, ClientID: "x", UsernameFlag: true, Username: "me"},
			[]byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x80, 0, 0, 0, 1, 'x', 0, 2, 'm', 'e'}},
		{"3.2 CONNACK accepted", &packets.Connack{}, []byte{0x20, 2, 0, 0}},
		{"3.2 CONNACK session present", &packets.Connack{SessionPresent: true}, []byte{0x20, 2, 1, 0}},
		{"3.2 CONNACK 1 unacceptable protocol version", &packets.Connack{ReasonCode: 0x84}, []byte{0x20, 2, 0, 1}},
		{"3.2 CONNACK 2 identifier rejected", &packets.Connack{ReasonCode: 0x85}, []byte{0x20, 2, 0, 2}},
		{"3.2 CONNACK 3 server unavailable", &packets.Connack{ReasonCode: 0x88}, []byte{0x20, 2, 0, 3}},
		{"3.2 CONNACK 4 bad user name or password", &packets.Connack{ReasonCode: 0x86}, []byte{0x20, 2, 0, 4}},
		{"3.2 CONNACK 5 not authorized", &packets.Connack{ReasonCode: 0x87}, []byte{0x20, 2, 0, 5}},
		{"3.3 PUBLISH QoS 0", &packets.Publish{Topic: "a/b", Payload: []byte("hi")},
			[]byte{0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i'}},
		{"3.3 PUBLISH QoS 0 retained, empty payload", &packets.Publish{Topic: "a", Retain: true, Payload: []byte{}},
			[]byte{0x31, 3, 0, 1, 'a'}},
		{"3.3 PUBLISH QoS 1 dup", &packets.Publish{Topic: "t", QoS: 1, Duplicate: true, PacketID: 0x0102, Payload: []byte{9}},
			[]byte{0x3A, 6, 0, 1, 't', 1, 2, 9}},
		{"3.3 PUBLISH QoS 2 retained", &packets.Publish{Topic: "t", QoS: 2, Retain: true, PacketID: 10, Payload: []byte{}},
			[]byte{0x35, 5, 0, 1, 't', 0, 10}},
		{"3.4 PUBACK", &packets.Puback{PacketID: 0xABCD}, []byte{0x40, 2, 0xAB, 0xCD}},
		{"3.5 PUBREC", &packets.Pubrec{PacketID: 1}, []byte{0x50, 2, 0, 1}},
		{"3.6 PUBREL", &packets.Pubrel{PacketID: 2}, []byte{0x62, 2, 0, 2}},
		{"3.7 PUBCOMP", &packets.Pubcomp{PacketID: 3}, []byte{0x70, 2, 0, 3}},
		{"3.8 SUBSCRIBE two filters", &packets.Subscribe{PacketID: 10, Subscriptions: []packets.SubOptions{{Topic: "a/#", QoS: 1}, {Topic: "b", QoS: 2}}},
			[]byte{0x82, 12, 0, 10, 0, 3, 'a', '/', '#', 1, 0, 1, 'b', 2}},
		{"3.9 SUBACK with failure", &packets.Suback{PacketID: 10, Reasons: []byte{0, 1, 2, 0x80}},
			[]byte{0x90, 6, 0, 10, 0, 1, 2, 0x80}},
		{"3.10 UNSUBSCRIBE", &packets.Unsubscribe{PacketID: 11, Topics: []string{"a/#", "b"}},
			[]byte{0xA2, 10, 0, 11, 0, 3, 'a', '/', '#', 0, 1, 'b'}},
		{"3.11 UNSUBACK", &packets.Unsuback{PacketID: 11}, []byte{0xB0, 2, 0, 11}},
		{"3.12 PINGREQ", &packets.Pingreq{}, []byte{0xC0, 0}},
		{"3.13 PINGRESP", &packets.Pingresp{}, []byte{0xD0, 0}},
		{"3.14 DISCONNECT", &packets.Disconnect{}, []byte{0xE0, 0}},
	}
}

func mustAppend311(t testing.TB, p packets.Packet) []byte {
	t.Helper()
	b, err := V311.Append(nil, p, 0)
	if err != nil {
		t.Fatalf("V311.Append(%T): %v", p, err)
	}
	return b
}

func TestAppendPacket311SpecBytes(t *testing.T) {
	for _, tc := range cases311() {
		got := mustAppend311(t, tc.pkt)
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, tc.wire)
		}
		// Appending keeps what dst held.
		got, err := V311.Append([]byte{0xEE}, tc.pkt, 0)
		if err != nil || !bytes.Equal(got, append([]byte{0xEE}, tc.wire...)) {
			t.Errorf("%s: append to a non-empty buffer: % x, %v", tc.name, got, err)
		}
	}
}

func TestDecode311SpecBytes(t *testing.T) {
	for _, tc := range cases311() {
		header, body := split(t, tc.wire)
		cp, err := V311.Decode(header, body)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if cp.Type != header>>4 || cp.Flags != header&0xF {
			t.Errorf("%s: fixed header type %d flags %#x, want %d %#x", tc.name, cp.Type, cp.Flags, header>>4, header&0xF)
		}
		if !reflect.DeepEqual(cp.Content, tc.pkt) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, cp.Content, tc.pkt)
		}
	}
}

// TestAppendPacket311Normalises: what 3.1.1 leaves out is not written,
// and empty properties are no properties.
func TestAppendPacket311Normalises(t *testing.T) {
	empty := &packets.Properties{}
	cases := []struct {
		name string
		pkt  packets.Packet
		wire []byte
	}{
		{"PUBCOMP packet identifier not found", &packets.Pubcomp{PacketID: 7, ReasonCode: 0x92}, []byte{0x70, 2, 0, 7}},
		{"PUBREL packet identifier not found", &packets.Pubrel{PacketID: 7, ReasonCode: 0x92}, []byte{0x62, 2, 0, 7}},
		{"PUBACK no matching subscribers", &packets.Puback{PacketID: 7, ReasonCode: 0x10, Properties: empty}, []byte{0x40, 2, 0, 7}},
		{"DISCONNECT with will", &packets.Disconnect{ReasonCode: 0x04, Properties: empty}, []byte{0xE0, 0}},
		{"PUBLISH empty properties", &packets.Publish{Topic: "t", Properties: empty}, []byte{0x30, 3, 0, 1, 't'}},
		{"SUBSCRIBE empty properties", &packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "t"}}, Properties: empty},
			[]byte{0x82, 6, 0, 1, 0, 1, 't', 0}},
		{"UNSUBACK success codes", &packets.Unsuback{PacketID: 1, Reasons: []byte{0, 0x11}}, []byte{0xB0, 2, 0, 1}},
		{"CONNECT no name or level, will fields without will", &packets.Connect{ClientID: "c", WillQOS: 1, WillRetain: true, WillTopic: "x",
			Username: "ignored", Properties: empty, WillProperties: &packets.Properties{WillDelayInterval: ptr(uint32(5))}},
			[]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 0, 0, 1, 'c'}},
	}
	for _, tc := range cases {
		if got := mustAppend311(t, tc.pkt); !bytes.Equal(got, tc.wire) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, tc.wire)
		}
	}
}

func TestAppendPacket311Refuses(t *testing.T) {
	user := &packets.Properties{User: []packets.User{{Key: "k", Value: "v"}}}
	sub := func(o packets.SubOptions) *packets.Subscribe {
		o.Topic = "t"
		return &packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{o}}
	}
	cases := []struct {
		name string
		pkt  packets.Packet
	}{
		{"nil", nil},
		{"nil PUBLISH", (*packets.Publish)(nil)},
		{"nil PUBACK", (*packets.Puback)(nil)},
		{"nil CONNECT", (*packets.Connect)(nil)},
		{"AUTH", &packets.Auth{}},
		{"PUBLISH QoS 3", &packets.Publish{Topic: "t", QoS: 3}},
		{"PUBLISH long topic", &packets.Publish{Topic: strings.Repeat("t", 70000)}},
		{"PUBLISH properties", &packets.Publish{Topic: "t", Properties: &packets.Properties{ContentType: "text/plain"}}},
		{"PUBLISH topic alias", &packets.Publish{Topic: "t", Properties: &packets.Properties{TopicAlias: ptr(uint16(1))}}},
		{"PUBACK refusing", &packets.Puback{PacketID: 1, ReasonCode: 0x80}},
		{"PUBREC refusing", &packets.Pubrec{PacketID: 1, ReasonCode: 0x97}},
		{"PUBACK properties", &packets.Puback{PacketID: 1, Properties: &packets.Properties{ReasonString: "x"}}},
		{"PUBCOMP properties", &packets.Pubcomp{PacketID: 1, Properties: user}},
		{"DISCONNECT session expiry", &packets.Disconnect{Properties: &packets.Properties{SessionExpiryInterval: ptr(uint32(1))}}},
		{"CONNECT properties", &packets.Connect{ClientID: "c", Properties: &packets.Properties{SessionExpiryInterval: ptr(uint32(60))}}},
		{"CONNECT maximum packet size", &packets.Connect{ClientID: "c", Properties: &packets.Properties{MaximumPacketSize: ptr(uint32(1))}}},
		{"CONNECT will properties", &packets.Connect{ClientID: "c", WillFlag: true, WillTopic: "w", WillProperties: &packets.Properties{WillDelayInterval: ptr(uint32(5))}}},
		{"CONNECT protocol version 5", &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "c"}},
		{"CONNECT protocol name MQIsdp", &packets.Connect{ProtocolName: "MQIsdp", ClientID: "c"}},
		{"CONNECT password without user name", &packets.Connect{ClientID: "c", PasswordFlag: true, Password: []byte("p")}},
		{"CONNECT will QoS 3", &packets.Connect{ClientID: "c", WillFlag: true, WillTopic: "w", WillQOS: 3}},
		{"CONNECT long client id", &packets.Connect{ClientID: strings.Repeat("c", 70000)}},
		{"CONNACK code without 3.1.1 equivalent", &packets.Connack{ReasonCode: 0x8A}},
		{"CONNACK properties", &packets.Connack{Properties: &packets.Properties{ReceiveMaximum: ptr(uint16(1))}}},
		{"SUBSCRIBE no-local", sub(packets.SubOptions{NoLocal: true})},
		{"SUBSCRIBE retain as published", sub(packets.SubOptions{RetainAsPublished: true})},
		{"SUBSCRIBE retain handling", sub(packets.SubOptions{RetainHandling: 2})},
		{"SUBSCRIBE QoS 3", sub(packets.SubOptions{QoS: 3})},
		{"SUBSCRIBE subscription identifier", &packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "t"}},
			Properties: &packets.Properties{SubscriptionIdentifier: ptr(1)}}},
		{"SUBSCRIBE user properties", &packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "t"}}, Properties: user}},
		{"SUBSCRIBE no filters", &packets.Subscribe{PacketID: 1}},
		{"SUBACK MQTT 5 code", &packets.Suback{PacketID: 1, Reasons: []byte{0x87}}},
		{"SUBACK no codes", &packets.Suback{PacketID: 1}},
		{"UNSUBSCRIBE user properties", &packets.Unsubscribe{PacketID: 1, Topics: []string{"t"}, Properties: user}},
		{"UNSUBSCRIBE no filters", &packets.Unsubscribe{PacketID: 1}},
		{"UNSUBACK refusal", &packets.Unsuback{PacketID: 1, Reasons: []byte{0x87}}},
	}
	for _, tc := range cases {
		got, err := V311.Append([]byte{1, 2}, tc.pkt, 0)
		if !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("%s: error %v, want ErrInvalidPacket", tc.name, err)
		}
		if !bytes.Equal(got, []byte{1, 2}) {
			t.Errorf("%s: dst changed to % x", tc.name, got)
		}
	}
}

func TestAppendPacket311MaxSize(t *testing.T) {
	for _, tc := range cases311() {
		n := len(tc.wire)
		if _, err := V311.Append(nil, tc.pkt, n); err != nil {
			t.Errorf("%s: at its own size %d: %v", tc.name, n, err)
		}
		got, err := V311.Append([]byte{7}, tc.pkt, n-1)
		if !errors.Is(err, ErrPacketTooLarge) || !bytes.Equal(got, []byte{7}) {
			t.Errorf("%s: limit %d: % x, %v, want ErrPacketTooLarge and dst unchanged", tc.name, n-1, got, err)
		}
	}
}

func TestAppendPacket311FastPathsDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1024)
	for _, p := range []packets.Packet{
		&packets.Publish{Topic: "a/b/c", QoS: 1, PacketID: 3, Payload: make([]byte, 100)},
		&packets.Publish{Topic: "a/b/c", Payload: make([]byte, 100), Properties: &packets.Properties{}},
		&packets.Puback{PacketID: 1}, &packets.Pubrec{PacketID: 1}, &packets.Pubrel{PacketID: 1},
		&packets.Pubcomp{PacketID: 1, ReasonCode: 0x92}, &packets.Pingreq{}, &packets.Pingresp{}, &packets.Disconnect{},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			var err error
			if buf, err = V311.Append(buf[:0], p, 0); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("V311.Append(%T) allocates %v times", p, allocs)
		}
	}
}

func TestDecode311Allocations(t *testing.T) {
	header, body := split(t, mustAppend311(t, &packets.Publish{Topic: "a/b/c", QoS: 1, PacketID: 3, Payload: make([]byte, 100)}))
	// One for packet and content, one for the topic, one for the payload.
	if allocs := testing.AllocsPerRun(100, func() { _, _ = V311.Decode(header, body) }); allocs > 3 {
		t.Errorf("V311.Decode(PUBLISH) allocates %v times, want at most 3", allocs)
	}
	for _, h := range []byte{0x40, 0x50, 0x62, 0x70, 0xB0} {
		if allocs := testing.AllocsPerRun(100, func() { _, _ = V311.Decode(h, []byte{0, 1}) }); allocs > 1 {
			t.Errorf("V311.Decode(%s) allocates %v times, want 1", packetNames[h>>4], allocs)
		}
	}
}

func TestDecode311Malformed(t *testing.T) {
	cases := []struct {
		name   string
		header byte
		body   []byte
	}{
		{"type 0", 0x00, nil},
		{"type 15 (AUTH is MQTT 5 only)", 0xF0, nil},
		{"PUBLISH QoS 3", 0x36, []byte{0, 1, 't', 0, 1}},
		{"PUBLISH empty", 0x30, nil},
		{"PUBLISH topic longer than packet", 0x30, []byte{0, 5, 't'}},
		{"PUBLISH QoS 1 without packet id", 0x32, []byte{0, 1, 't', 0}},
		{"PUBLISH bad UTF-8 topic", 0x30, []byte{0, 1, 0xFF}},
		{"PUBLISH topic with U+0000", 0x30, []byte{0, 1, 0}},
		{"PUBACK with reason code (MQTT 5 form)", 0x40, []byte{0, 1, 0}},
		{"PUBACK short", 0x40, []byte{0}},
		{"PUBREL flags 0", 0x60, []byte{0, 1}},
		{"PUBCOMP flags", 0x71, []byte{0, 1}},
		{"PINGRESP with body", 0xD0, []byte{0}},
		{"DISCONNECT with reason (MQTT 5 form)", 0xE0, []byte{0}},
		{"CONNACK MQTT 5 form", 0x20, []byte{0, 0, 0}},
		{"CONNACK short", 0x20, []byte{0}},
		{"CONNACK reserved flags", 0x20, []byte{2, 0}},
		{"CONNACK reserved return code", 0x20, []byte{0, 6}},
		{"CONNACK return code 0x80", 0x20, []byte{0, 0x80}},
		{"SUBACK without codes", 0x90, []byte{0, 1}},
		{"SUBACK reserved code", 0x90, []byte{0, 1, 3}},
		{"SUBACK MQTT 5 code", 0x90, []byte{0, 1, 0x87}},
		{"SUBACK short", 0x90, []byte{0}},
		{"UNSUBACK with reason codes (MQTT 5 form)", 0xB0, []byte{0, 1, 0}},
		{"SUBSCRIBE without filters", 0x82, []byte{0, 1}},
		{"SUBSCRIBE without QoS byte", 0x82, []byte{0, 1, 0, 1, 't'}},
		{"SUBSCRIBE reserved option bits", 0x82, []byte{0, 1, 0, 1, 't', 0x04}},
		{"SUBSCRIBE flags 0", 0x80, []byte{0, 1, 0, 1, 't', 0}},
		{"UNSUBSCRIBE without filters", 0xA2, []byte{0, 1}},
		{"UNSUBSCRIBE truncated filter", 0xA2, []byte{0, 1, 0, 3, 'a'}},
		{"CONNECT MQTT 5", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0}},
		{"CONNECT MQIsdp", 0x10, []byte{0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 0, 0, 0}},
		{"CONNECT reserved flag", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 0, 0, 0}},
		{"CONNECT will QoS 3", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x1C, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"CONNECT will retain without will", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x20, 0, 0, 0, 0}},
		{"CONNECT password without user name", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x40, 0, 0, 0, 0, 0, 0}},
		{"CONNECT truncated", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0}},
		{"CONNECT missing user name", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x80, 0, 0, 0, 0}},
		{"CONNECT trailing bytes", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 0, 0, 0, 9}},
		{"CONNECT MQTT 5 properties", 0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range cases {
		cp, err := V311.Decode(tc.header, tc.body)
		if !errors.Is(err, ErrMalformedPacket) || cp != nil {
			t.Errorf("%s: %v, %v; want ErrMalformedPacket", tc.name, cp, err)
		}
	}
}

func TestDecode311DoesNotAlias(t *testing.T) {
	for _, tc := range cases311() {
		header, body := split(t, bytes.Clone(tc.wire))
		cp, err := V311.Decode(header, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := range body {
			body[i] ^= 0xFF
		}
		if !reflect.DeepEqual(cp.Content, tc.pkt) {
			t.Errorf("%s: decoded packet changed with its input: %#v", tc.name, cp.Content)
		}
	}
}

// TestDecodePre5Connack: an MQTT 5 client reading the CONNACK of a broker
// that does not speak MQTT 5 sees the refusal, never success.
func TestDecodePre5Connack(t *testing.T) {
	for rc := byte(1); rc <= 5; rc++ {
		cp, err := Decode(0x20, []byte{0, rc})
		if err != nil {
			t.Fatalf("return code %d: %v", rc, err)
		}
		ack := cp.Content.(*packets.Connack)
		if ack.ReasonCode != connack311To5[rc] || ack.SessionPresent || ack.Properties != nil {
			t.Errorf("return code %d: %+v", rc, ack)
		}
	}
	if cp, _ := Decode(0x20, []byte{0, 1}); cp.Content.(*packets.Connack).ReasonCode != 0x84 {
		t.Error("return code 1 is not 0x84")
	}
	for _, body := range [][]byte{{0, 0}, {1, 0}, {1, 1}, {0, 6}, {0, 0x80}} {
		if _, err := Decode(0x20, body); !errors.Is(err, ErrMalformedPacket) {
			t.Errorf("MQTT 5 Decode(CONNACK % x): %v, want ErrMalformedPacket", body, err)
		}
	}
}

func TestPresentKnowsEveryField(t *testing.T) {
	if present(nil) != 0 || present(&packets.Properties{}) != 0 {
		t.Fatal("empty properties are not empty")
	}
	rt := reflect.TypeFor[packets.Properties]()
	seen := propSet(0)
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		pr := &packets.Properties{}
		v := reflect.ValueOf(pr).Elem().Field(i)
		switch f.Type.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(f.Type.Elem()))
		case reflect.String:
			v.SetString("x")
		case reflect.Slice:
			v.Set(reflect.MakeSlice(f.Type, 1, 1))
		default:
			t.Fatalf("field %s has unexpected kind %s: extend this test", f.Name, f.Type.Kind())
		}
		got := present(pr)
		if got == 0 || got&(got-1) != 0 || got&seen != 0 {
			t.Errorf("present ignores %s or confuses it with another field (%#x)", f.Name, got)
		}
		seen |= got
		if propNames[firstOf(got)] == "" {
			t.Errorf("%s has no name", f.Name)
		}
	}
}

func TestVersionSelection(t *testing.T) {
	var rd Reader
	var w Writer
	if rd.Codec() != V5 || w.Codec() != V5 || V5.Version() != MQTT5 || V311.Version() != MQTT311 {
		t.Fatal("zero Reader/Writer are not MQTT 5")
	}
	for _, v := range []byte{1, 3, 6, 255} {
		if _, err := CodecFor(v); !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("CodecFor(%d): %v", v, err)
		}
	}
	for v, want := range map[byte]Codec{0: V5, 5: V5, 4: V311} {
		if c, err := CodecFor(v); err != nil || c != want {
			t.Errorf("CodecFor(%d) = %v, %v", v, c, err)
		}
	}
	rd.SetCodec(V311)
	w.SetCodec(V311)
	// Through the Writer and back through the Reader, in small pieces:
	// what a broker sends.
	var want [][]byte
	var sent []wire311
	for _, tc := range cases311() {
		if clientOnly(tc.wire[0]) {
			continue
		}
		if err := w.Append(tc.pkt); err != nil {
			t.Fatal(err)
		}
		want = append(want, tc.wire)
		sent = append(sent, tc)
	}
	c := &memConn{}
	if err := w.Flush(c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.out.Bytes(), stream(want...)) {
		t.Fatalf("Writer wrote % x", head(c.out.Bytes()))
	}
	in := &memConn{chunks: chunks(c.out.Bytes(), 3), eof: true}
	got := drain(t, &rd, in)
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i, tc := range sent {
		if !reflect.DeepEqual(got[i].Content, tc.pkt) {
			t.Errorf("%s: read %#v", tc.name, got[i].Content)
		}
	}
	rd.Reset()
	if rd.Codec() != V311 {
		t.Fatal("Reset forgot the codec")
	}
	// Type 15 is refused from the fixed header on 3.1.1, accepted on 5.
	rd.Reset()
	if _, err := rd.FillNow(&memConn{chunks: [][]byte{{0xF0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); !errors.Is(err, ErrMalformedPacket) {
		t.Fatalf("AUTH on 3.1.1: %v", err)
	}
	rd.SetCodec(V5)
	rd.Reset()
	if _, err := rd.FillNow(&memConn{chunks: [][]byte{{0xF0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if cp, err := rd.Next(); err != nil || cp == nil {
		t.Fatalf("AUTH on 5: %v %v", cp, err)
	}
	// A v5 Writer still writes property lengths.
	w.SetCodec(V5)
	if err := w.Append(&packets.Publish{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if w.Buffered() != 6 {
		t.Fatalf("MQTT 5 PUBLISH of %d bytes, want 6", w.Buffered())
	}
}

// clientOnly reports whether a packet with this first byte is one only a
// client sends, which Reader refuses.
func clientOnly(header byte) bool {
	switch header >> 4 {
	case packets.CONNECT, packets.SUBSCRIBE, packets.UNSUBSCRIBE, packets.PINGREQ:
		return true
	}
	return false
}

// FuzzDecode311 checks that no input makes Decode311 panic, that every
// failure wraps ErrMalformedPacket, that whatever decodes encodes again to
// the very same bytes (3.1.1 has exactly one encoding of each packet), and
// that the decoded packet does not refer to its input.
func FuzzDecode311(f *testing.F) {
	for _, tc := range cases311() {
		header, body := split(f, tc.wire)
		f.Add(header, body)
	}
	f.Add(byte(0x20), []byte{0, 1})
	f.Add(byte(0x82), []byte{0, 1, 0, 1, 't', 0x04})
	f.Add(byte(0x10), []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC6, 0, 0, 0, 0, 0, 1, 'w', 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, header byte, body []byte) {
		cp, err := V311.Decode(header, body)
		if err != nil {
			if !errors.Is(err, ErrMalformedPacket) {
				t.Fatalf("error %v does not wrap ErrMalformedPacket", err)
			}
			if cp != nil {
				t.Fatal("packet and error")
			}
			return
		}
		enc, err := V311.Append(nil, cp.Content, 0)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", cp.Content, err)
		}
		h2, b2 := split(t, enc)
		if h2 != header || !bytes.Equal(b2, body) {
			t.Fatalf("round trip changed the packet:\n in %02x % x\nout %02x % x", header, head(body), h2, head(b2))
		}
		again, err := V311.Decode(h2, b2)
		if err != nil || !reflect.DeepEqual(again, cp) {
			t.Fatalf("decode(encode(p)) = %#v, %v; want %#v", again, err, cp)
		}
		for i := range body {
			body[i] ^= 0xFF
		}
		if after, err := V311.Append(nil, cp.Content, 0); err != nil || !bytes.Equal(after, enc) {
			t.Fatalf("decoded packet aliases its input")
		}
	})
}

func BenchmarkAppend311(b *testing.B) {
	pub := &packets.Publish{Topic: "sensors/room-1/temperature", QoS: 1, PacketID: 42, Payload: make([]byte, 100)}
	buf := make([]byte, 0, 4096)
	for _, c := range []struct {
		name string
		p    packets.Packet
	}{{"publish", pub}, {"puback", &packets.Puback{PacketID: 42}}} {
		b.Run(c.name+"/v311", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = V311.Append(buf[:0], c.p, 0)
			}
			benchSink = buf
		})
		b.Run(c.name+"/v5", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendPacket(buf[:0], c.p, 0)
			}
			benchSink = buf
		})
	}
}

func BenchmarkDecode311(b *testing.B) {
	pub := &packets.Publish{Topic: "sensors/room-1/temperature", QoS: 1, PacketID: 42, Payload: make([]byte, 100)}
	for _, c := range []struct {
		name string
		p    packets.Packet
	}{{"publish", pub}, {"puback", &packets.Puback{PacketID: 42}}, {"suback", &packets.Suback{PacketID: 1, Reasons: []byte{1}}}} {
		h, body := split(b, mustAppend311(b, c.p))
		b.Run(c.name+"/v311", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pktSink, _ = V311.Decode(h, body)
			}
		})
		h5, body5 := split(b, mustAppend(b, c.p))
		b.Run(c.name+"/v5", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pktSink, _ = Decode(h5, body5)
			}
		})
	}
}
