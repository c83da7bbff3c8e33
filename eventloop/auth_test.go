package eventloop_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/scram"
)

func scramClient(t *testing.T, user, pass string) *scram.Client {
	t.Helper()
	c, err := scram.SHA256(user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnhancedAuthSCRAM: SCRAM-SHA-256 against the embedded broker: the
// conversation runs before CONNACK (client-first in CONNECT, AUTH 0x18
// both ways, the broker's proof in CONNACK), re-authentication runs on
// the live connection (AUTH 0x19, 0x18, 0x00) and is reported, messages
// flow before and after, and nothing of the exchange is logged.
func TestEnhancedAuthSCRAM(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{
		EnhancedAuth:        mqtttest.SCRAMSHA256(map[string]string{"alice": "correct horse"}),
		RequireEnhancedAuth: true,
	})
	var logs bytes.Buffer
	id := uniqueID("scram")
	c := startClient(t, mb.URL(), eventloop.Options{ClientID: id,
		Authenticator: scramClient(t, "alice", "correct horse"),
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	topic := uniqueID("auth")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})

	ctx := testContext(t)
	connect, err := mb.WaitPacket(ctx, id, mqtttest.FromClient, mochi.Connect)
	if err != nil {
		t.Fatal(err)
	}
	if m := connect.Packet.Properties.AuthenticationMethod; m != "SCRAM-SHA-256" || !bytes.HasPrefix(connect.Packet.Properties.AuthenticationData, []byte("n,,n=alice,r=")) {
		t.Fatalf("CONNECT method %q data %q", m, connect.Packet.Properties.AuthenticationData)
	}
	ack, err := mb.WaitPacket(ctx, id, mqtttest.ToClient, mochi.Connack)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ack.Packet.Properties.AuthenticationData, []byte("v=")) {
		t.Fatalf("CONNACK carries no server proof: %q", ack.Packet.Properties.AuthenticationData)
	}
	if n := mb.Count(id, mqtttest.FromClient, mochi.Auth); n != 1 {
		t.Fatalf("client sent %d AUTH before CONNACK, want 1 (client-final)", n)
	}

	seq := mb.LastSeq()
	c.send(eventloop.Reauthenticate{})
	expect[eventloop.Reauthenticated](c)
	// The capture records a packet the broker sends after writing it: the
	// client can report Reauthenticated before the final AUTH is recorded.
	if _, err := mb.WaitMatch(ctx, seq, func(p mqtttest.Captured) bool {
		return p.Type == mochi.Auth && p.ClientID == id && p.Direction == mqtttest.ToClient && p.Packet.ReasonCode == 0x00
	}); err != nil {
		t.Fatalf("the broker's final AUTH (success) was not recorded: %v", err)
	}
	var codes []byte
	for _, p := range mb.Packets() {
		if p.Seq > seq && p.Type == mochi.Auth && p.ClientID == id {
			codes = append(codes, p.Packet.ReasonCode)
		}
	}
	if want := []byte{0x19, 0x18, 0x18, 0x00}; !bytes.Equal(codes, want) {
		t.Fatalf("AUTH reason codes of the re-authentication % x, want % x", codes, want)
	}
	c.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("still here")})
	if m := expect[eventloop.Message](c); string(m.Payload) != "still here" {
		t.Fatalf("got %q", m.Payload)
	}
	for _, s := range []string{"correct horse", "n=alice", "v="} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("log shows %q:\n%s", s, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "AUTH") {
		t.Errorf("no AUTH in the packet log, so it checked nothing")
	}
}

// TestEnhancedAuthRefused: a wrong password (0x87), an unknown method
// (0x8C) and a broker whose proof is wrong (ErrAuthentication) end the
// run at once.
func TestEnhancedAuthRefused(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{EnhancedAuth: mqtttest.SCRAMSHA256(map[string]string{"alice": "correct horse"})})
	c := newClient(t, mb.URL(), eventloop.Options{Authenticator: scramClient(t, "alice", "wrong")})
	err := c.end()
	var rerr *eventloop.ReasonCodeError
	if !errors.As(err, &rerr) || rerr.Code != 0x87 {
		t.Fatalf("wrong password: %v, want CONNACK 0x87", err)
	}

	sha512, err := scram.SHA512("alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, mb.URL(), eventloop.Options{Authenticator: sha512})
	err = c.end()
	if !errors.As(err, &rerr) || rerr.Code != 0x8C {
		t.Fatalf("unknown method: %v, want CONNACK 0x8C", err)
	}

	// A broker that does not know the password cannot prove it: it
	// answers with a proof made from another one.
	impostor := mqtttest.StartT(t, mqtttest.Options{EnhancedAuth: &forgedProof{
		EnhancedAuth: mqtttest.SCRAMSHA256(map[string]string{"alice": "correct horse"}),
	}})
	c = newClient(t, impostor.URL(), eventloop.Options{Authenticator: scramClient(t, "alice", "correct horse")})
	err = c.end()
	if !errors.Is(err, eventloop.ErrAuthentication) || !errors.Is(err, scram.ErrServerProof) {
		t.Fatalf("forged proof: %v, want ErrAuthentication wrapping scram.ErrServerProof", err)
	}
}

// forgedProof passes a conversation through but replaces the broker's
// final message with a wrong proof.
type forgedProof struct{ mqtttest.EnhancedAuth }

func (f *forgedProof) Begin(id string) mqtttest.AuthConversation {
	return forgedConv{f.EnhancedAuth.Begin(id)}
}

type forgedConv struct{ mqtttest.AuthConversation }

func (c forgedConv) Step(in []byte) ([]byte, bool, error) {
	out, done, err := c.AuthConversation.Step(in)
	if done {
		out = []byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	}
	return out, done, err
}

// TestReauthenticationRefused: a broker that refuses a re-authentication
// ends the connection with DISCONNECT 0x87, reported as Disconnected.
func TestReauthenticationRefused(t *testing.T) {
	var calls atomic.Int32
	mb := mqtttest.StartT(t, mqtttest.Options{EnhancedAuth: &onlyOnce{
		EnhancedAuth: mqtttest.SCRAMSHA256(map[string]string{"alice": "correct horse"}), calls: &calls}})
	c := startClient(t, mb.URL(), eventloop.Options{Authenticator: scramClient(t, "alice", "correct horse")})
	c.send(eventloop.Reauthenticate{})
	d := expect[eventloop.Disconnected](c)
	var rerr *eventloop.ReasonCodeError
	if !errors.As(d.Err, &rerr) || rerr.Packet != "DISCONNECT" || rerr.Code != 0x87 {
		t.Fatalf("Disconnected with %v, want DISCONNECT 0x87", d.Err)
	}
}

// onlyOnce accepts the first conversation and refuses the later ones.
type onlyOnce struct {
	mqtttest.EnhancedAuth
	calls *atomic.Int32
}

func (o *onlyOnce) Begin(id string) mqtttest.AuthConversation {
	if o.calls.Add(1) > 1 {
		return refuse{}
	}
	return o.EnhancedAuth.Begin(id)
}

type refuse struct{}

func (refuse) Step([]byte) ([]byte, bool, error) { return nil, false, errors.New("credential revoked") }

// TestReauthenticateRequestFailures: without an authenticator, on MQTT
// 3.1.1, and twice at once, Reauthenticate fails as a request.
func TestReauthenticateRequestFailures(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{EnhancedAuth: mqtttest.SCRAMSHA256(map[string]string{"alice": "pw"})})
	c := startClient(t, mb.URL(), eventloop.Options{})
	c.send(eventloop.Reauthenticate{})
	rf := expect[eventloop.RequestFailed](c)
	mustIs(t, rf.Err, eventloop.ErrInvalidRequest)

	c = startClient(t, mb.URL(), eventloop.Options{ProtocolVersion: 4})
	c.send(eventloop.Reauthenticate{})
	rf = expect[eventloop.RequestFailed](c)
	mustIs(t, rf.Err, eventloop.ErrMQTT5Only)

	c = startClient(t, mb.URL(), eventloop.Options{Authenticator: scramClient(t, "alice", "pw")})
	c.send(eventloop.Reauthenticate{})
	c.send(eventloop.Reauthenticate{})
	var ok, failed int
	for ok+failed < 2 {
		switch n := c.next().(type) {
		case eventloop.Reauthenticated:
			ok++
		case eventloop.RequestFailed:
			mustIs(t, n.Err, eventloop.ErrInvalidRequest)
			failed++
		}
	}
	if ok < 1 {
		t.Fatal("no re-authentication succeeded")
	}

	if _, err := eventloop.New(eventloop.Options{Servers: []string{mb.URL()}, ProtocolVersion: 4, Authenticator: scramClient(t, "a", "b")}); !errors.Is(err, eventloop.ErrMQTT5Only) {
		t.Fatalf("Authenticator on 3.1.1: %v", err)
	}
}
