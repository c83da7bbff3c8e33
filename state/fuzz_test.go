package state

import (
	"bytes"
	"errors"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// wire encodes packets as the broker would send them.
func wire(tb testing.TB, ps ...packets.Packet) []byte {
	tb.Helper()
	var b bytes.Buffer
	for _, p := range ps {
		if _, err := p.WriteTo(&b); err != nil {
			tb.Fatalf("encoding %T: %v", p, err)
		}
	}
	return b.Bytes()
}

// plausibleLength reports whether the packet at the start of b declares a
// remaining length b can hold, so that ReadPacket does not allocate for a
// length of up to 256 MB that is not there.
func plausibleLength(b []byte) bool {
	n, mult := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return 1+i+n <= len(b)
		}
		mult *= 128
	}
	return false
}

// FuzzHandleIncoming feeds arbitrary packets from the broker to a session
// with flows of every kind in flight. The first byte picks the options;
// the rest is read as a stream of packets until one fails to decode. No
// input may panic, any error must be a protocol violation, and the session
// must stay consistent.
func FuzzHandleIncoming(f *testing.F) {
	props := func() *packets.Properties { return &packets.Properties{} }
	seeds := [][]packets.Packet{
		{&packets.Puback{PacketID: 1, Properties: props()}},
		{&packets.Puback{PacketID: 1, Properties: props()}, &packets.Puback{PacketID: 1, Properties: props()}},
		{&packets.Pubrec{PacketID: 2, Properties: props()}, &packets.Pubcomp{PacketID: 2, Properties: props()}},
		{&packets.Pubrec{PacketID: 2, ReasonCode: 0x80, Properties: props()}},
		{&packets.Pubcomp{PacketID: 3, Properties: props()}},
		{&packets.Suback{PacketID: 4, Reasons: []byte{1, 0x80}, Properties: props()}},
		{&packets.Unsuback{PacketID: 5, Reasons: []byte{0}, Properties: props()}},
		{&packets.Pubrel{PacketID: 6, Properties: props()}, &packets.Pubrel{PacketID: 6, Properties: props()}},
		{&packets.Publish{Topic: "a/b", QoS: 2, PacketID: 6, Properties: props()}},
		{&packets.Publish{Topic: "a/b", QoS: 2, PacketID: 9, Properties: props()}, &packets.Pubrel{PacketID: 9, Properties: props()}},
		{&packets.Publish{Topic: "a/b", QoS: 1, PacketID: 9, Payload: []byte("x"), Properties: props()}},
		{&packets.Publish{Topic: "a/b", QoS: 0, Properties: props()}},
		{&packets.Publish{Topic: "a", QoS: 1, PacketID: 1, Properties: &packets.Properties{TopicAlias: ptr[uint16](1)}}},
		{&packets.Publish{Topic: "", QoS: 3, PacketID: 6, Properties: props()}},
		{&packets.Disconnect{ReasonCode: 0x8b, Properties: props()}},
		{&packets.Pingresp{}, &packets.Pingresp{}},
		{&packets.Connack{Properties: props()}},
		{&packets.Auth{Properties: props()}},
		{&packets.Pingreq{}},
		{&packets.Subscribe{PacketID: 1, Subscriptions: []packets.SubOptions{{Topic: "a"}}, Properties: props()}},
	}
	for _, ps := range seeds {
		data := wire(f, ps...)
		f.Add(append([]byte{0}, data...))
		f.Add(append([]byte{1}, data...))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var mode byte
		if len(data) > 0 {
			mode, data = data[0], data[1:]
		}
		maxInflight := []int{0, 3, 4, 65535}[(mode>>1)&3] // the fixture needs 3
		s := sessionWithFlows(t, Config{ManualAcks: mode&1 != 0, MaxInflight: maxInflight})
		r := bytes.NewReader(data)
		for r.Len() > 0 {
			if !plausibleLength(data[len(data)-r.Len():]) {
				return
			}
			cp, err := packets.ReadPacket(r)
			if err != nil {
				return
			}
			ev, reply, err := s.HandleIncoming(cp)
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("HandleIncoming(%v) = %v, want nil or ErrProtocol", cp, err)
				}
				if ev != nil || reply != nil {
					t.Fatalf("HandleIncoming with an error returned event %v, reply %v", ev, reply)
				}
				// The connection closes; the session goes on in the next.
				s.Connected(connack(mode&0x10 != 0, nil), false)
			}
			if d, ok := ev.(Delivered); ok && s.cfg.ManualAcks && d.Publish.QoS > 0 {
				if _, err := s.Ack(d.Publish.PacketID, d.Publish.QoS, mode&0x80, 0); err != nil {
					t.Fatalf("Ack of a delivered message: %v", err)
				}
			}
			// Keep new flows going out.
			if err := s.NextToSend().Err; err != nil && !errors.Is(err, ErrNoPacketID) && !errors.Is(err, ErrNotSupported) {
				t.Fatalf("NextToSend() = %v", err)
			}
			checkInvariants(t, s)
		}
	})
}
