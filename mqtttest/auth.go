package mqtttest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	xdg "github.com/xdg-go/scram"
)

// EnhancedAuth is the broker's side of MQTT 5 enhanced authentication
// (Options.EnhancedAuth): clients whose CONNECT names Method go through a
// conversation of AUTH packets before their CONNACK, and again when they
// ask to re-authenticate.
type EnhancedAuth interface {
	// Method is the Authentication Method served, e.g. "SCRAM-SHA-256".
	Method() string
	// Begin starts the broker's side of one conversation with a client.
	Begin(clientID string) AuthConversation
}

// AuthConversation is one authentication exchange on the broker's side.
type AuthConversation interface {
	// Step takes the client's Authentication Data and returns the
	// broker's. done means success: out then goes in the CONNACK (or the
	// AUTH success of a re-authentication). Otherwise out goes to the
	// client in an AUTH asking to continue. An error refuses the client:
	// CONNACK, or DISCONNECT during a session, with reason 0x87 (not
	// authorized).
	Step(in []byte) (out []byte, done bool, err error)
}

// SCRAMSHA256 returns the broker's side of SCRAM-SHA-256 for the users
// given as name → password (4096 PBKDF2 iterations, random salts).
func SCRAMSHA256(users map[string]string) EnhancedAuth {
	stored := map[string]xdg.StoredCredentials{}
	for name, pw := range users {
		c, err := xdg.SHA256.NewClient(name, pw, "")
		if err != nil {
			continue // cannot be prepared: that user cannot log in
		}
		salt := make([]byte, 16)
		_, _ = rand.Read(salt)
		stored[name] = c.GetStoredCredentials(xdg.KeyFactors{Salt: string(salt), Iters: 4096})
	}
	srv, _ := xdg.SHA256.NewServer(func(name string) (xdg.StoredCredentials, error) {
		if c, ok := stored[name]; ok {
			return c, nil
		}
		return xdg.StoredCredentials{}, fmt.Errorf("unknown user %q", name)
	})
	return &scramAuth{srv: srv}
}

type scramAuth struct{ srv *xdg.Server }

func (*scramAuth) Method() string { return "SCRAM-SHA-256" }

func (a *scramAuth) Begin(string) AuthConversation {
	return &scramConv{conv: a.srv.NewConversation()}
}

type scramConv struct{ conv *xdg.ServerConversation }

func (c *scramConv) Step(in []byte) ([]byte, bool, error) {
	out, err := c.conv.Step(string(in))
	if err != nil {
		return nil, false, err
	}
	if c.conv.Done() {
		if !c.conv.Valid() {
			return nil, false, errors.New("scram: invalid proof")
		}
		return []byte(out), true, nil
	}
	return []byte(out), false, nil
}

// enhancedAuthConnect runs the conversation of a CONNECT that names an
// authentication method, on the connection's goroutine, before CONNACK.
// It returns an error (after sending the refusing CONNACK) to refuse the
// client.
func (h *hook) enhancedAuthConnect(cl *mqtt.Client, pk packets.Packet) error {
	a := h.opts.EnhancedAuth
	method := pk.Properties.AuthenticationMethod
	if method != a.Method() {
		_ = h.srv.SendConnack(cl, packets.ErrBadAuthenticationMethod, false, nil)
		return packets.ErrBadAuthenticationMethod
	}
	conv := a.Begin(cl.ID)
	out, done, err := conv.Step(pk.Properties.AuthenticationData)
	for err == nil && !done {
		err = cl.WritePacket(authPacket(packets.CodeContinueAuthentication.Code, method, out))
		if err != nil {
			break
		}
		var fh packets.FixedHeader
		if err = cl.ReadFixedHeader(&fh); err != nil {
			break
		}
		var next packets.Packet
		if next, err = cl.ReadPacket(&fh); err != nil {
			break
		}
		if fh.Type != packets.Auth || next.ReasonCode != packets.CodeContinueAuthentication.Code ||
			next.Properties.AuthenticationMethod != method {
			err = fmt.Errorf("mqtttest: expected AUTH continue for %s, got packet type %d", method, fh.Type)
			break
		}
		out, done, err = conv.Step(next.Properties.AuthenticationData)
	}
	if err != nil {
		_ = h.srv.SendConnack(cl, packets.ErrNotAuthorized, false, nil)
		return packets.ErrNotAuthorized
	}
	h.mu.Lock()
	if st := h.conns[cl.Net.Conn]; st != nil {
		st.authMethod, st.authFinal = method, out
	}
	h.mu.Unlock()
	return nil
}

// OnAuthPacket carries out re-authentication: AUTH 0x19 starts a
// conversation, AUTH 0x18 continues it.
func (h *hook) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	a := h.opts.EnhancedAuth
	if a == nil || pk.Properties.AuthenticationMethod != a.Method() {
		return pk, packets.ErrBadAuthenticationMethod
	}
	h.mu.Lock()
	st := h.conns[cl.Net.Conn]
	h.mu.Unlock()
	if st == nil {
		return pk, packets.ErrProtocolViolation
	}
	switch pk.ReasonCode {
	case packets.CodeReAuthenticate.Code:
		st.reauth = a.Begin(cl.ID)
	case packets.CodeContinueAuthentication.Code:
		if st.reauth == nil {
			return pk, packets.ErrProtocolViolation
		}
	default:
		return pk, packets.ErrProtocolViolation
	}
	out, done, err := st.reauth.Step(pk.Properties.AuthenticationData)
	if err != nil {
		st.reauth = nil
		return pk, packets.ErrNotAuthorized
	}
	code := packets.CodeContinueAuthentication.Code
	if done {
		st.reauth = nil
		code = packets.CodeSuccess.Code
	}
	if err := cl.WritePacket(authPacket(code, a.Method(), out)); err != nil {
		return pk, err
	}
	return pk, nil
}

func authPacket(code byte, method string, data []byte) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  code,
		Properties:  packets.Properties{AuthenticationMethod: method, AuthenticationData: data},
	}
}

// authFinal returns (and forgets) what a successful conversation left for
// the CONNACK of c.
func (h *hook) authFinal(c net.Conn) (method string, data []byte) {
	if st := h.conns[c]; st != nil {
		method, data = st.authMethod, st.authFinal
		st.authMethod, st.authFinal = "", nil
	}
	return method, data
}
