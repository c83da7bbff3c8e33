package wire

import (
	"reflect"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestAppendPublishAliasMatchesPaho: a PUBLISH whose only property is a
// Topic Alias is encoded as paho does, without allocating.
func TestAppendPublishAliasMatchesPaho(t *testing.T) {
	alias := uint16(0x0102)
	for _, p := range []*packets.Publish{
		{Topic: "a/long/topic", Payload: []byte("x"), Properties: &packets.Properties{TopicAlias: &alias}},
		{Topic: "", QoS: 1, PacketID: 7, Payload: []byte("y"), Properties: &packets.Properties{TopicAlias: &alias}},
		{Topic: "t", QoS: 2, PacketID: 9, Retain: true, Duplicate: true, Properties: &packets.Properties{TopicAlias: &alias}},
	} {
		got, err := AppendPacket(nil, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := pahoBytes(t, p); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v: % x, paho % x", p, got, want)
		}
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() { _, _ = AppendPacket(buf[:0], p, 0) }); n != 0 {
			t.Fatalf("%v allocations per alias publish", n)
		}
	}
}
