package wire

import (
	"reflect"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// TestAuthRoundTrip: AUTH packets of enhanced authentication, as the
// client sends them (re-authenticate, continue) and as brokers do
// (continue, success), encode and decode back to the same packet.
func TestAuthRoundTrip(t *testing.T) {
	for _, p := range []*packets.Auth{
		{ReasonCode: 0x19, Properties: &packets.Properties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte("n,,n=user,r=abc")}},
		{ReasonCode: 0x18, Properties: &packets.Properties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte("r=abcdef,s=c2FsdA==,i=4096")}},
		{ReasonCode: 0x00, Properties: &packets.Properties{AuthMethod: "SCRAM-SHA-256", AuthData: []byte("v=proof")}},
		{ReasonCode: 0x18, Properties: &packets.Properties{AuthMethod: "X", ReasonString: "go on", User: []packets.User{{Key: "k", Value: "v"}}}},
		{ReasonCode: 0x00, Properties: &packets.Properties{}},
	} {
		b, err := AppendPacket(nil, p, 0)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if b[0] != packets.AUTH<<4 {
			t.Fatalf("first byte %#x, want AUTH with flags 0", b[0])
		}
		header, body := split(t, b)
		cp, err := Decode(header, body)
		if err != nil {
			t.Fatalf("% x: %v", b, err)
		}
		got, ok := cp.Content.(*packets.Auth)
		want := *p
		if present(want.Properties) == 0 {
			want.Properties = nil // decoded as no properties at all
		}
		if ok && cp.User() != "" {
			got.Properties.User = cp.User().Users() // the packets model, for comparison
		}
		if !ok || !reflect.DeepEqual(got, &want) {
			t.Fatalf("decoded %#v, want %#v", cp.Content, p)
		}
	}
	// A property AUTH may not carry is malformed.
	b, _ := AppendPacket(nil, &packets.Auth{ReasonCode: 0x18, Properties: &packets.Properties{AuthMethod: "X"}}, 0)
	bad := append([]byte{}, b...)
	// Replace the method (0x15) by a Topic Alias identifier (0x23).
	for i := range bad {
		if bad[i] == packets.PropAuthMethod {
			bad[i] = packets.PropTopicAlias
			break
		}
	}
	header, body := split(t, bad)
	if _, err := Decode(header, body); err == nil {
		t.Errorf("AUTH with a Topic Alias decoded: % x", bad)
	}
}
