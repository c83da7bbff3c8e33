package state

import (
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

func TestSubackReasonCountMustMatch(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: sub("a", "b")})
	id := sendID(t, s)
	handleViolation(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0x01}})
}

func TestRefusedUnsubscribeKeepsSubscription(t *testing.T) {
	s := New(Config{})
	s.Enqueue(Pending{Packet: sub("a", "b")})
	id := sendID(t, s)
	handle(t, s, &packets.Suback{PacketID: id, Reasons: []byte{0x01, 0x01}})
	s.Enqueue(Pending{Packet: unsub("a", "b")})
	id = sendID(t, s)
	handle(t, s, &packets.Unsuback{PacketID: id, Reasons: []byte{0x87, 0x00}})
	subs := s.Subscriptions()
	if _, ok := subs["a"]; !ok {
		t.Error("refused unsubscribe removed filter a")
	}
	if _, ok := subs["b"]; ok {
		t.Error("granted unsubscribe kept filter b")
	}
}
