package eventloop

import (
	"context"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/mqttstr"
)

// Authenticator carries out MQTT 5 enhanced authentication: the
// conversation of AUTH packets between CONNECT and CONNACK, and again when
// the client asks to re-authenticate during a session (Reauthenticate).
// Set one as Options.Authenticator; package scram provides SCRAM-SHA-256.
//
// Its methods run on the goroutine calling Next, one conversation at a
// time, and should not block (ctx carries the connect deadline, or the
// run's context during re-authentication).
type Authenticator interface {
	// Method is the Authentication Method, e.g. "SCRAM-SHA-256".
	Method() string
	// Start begins a conversation and returns the Authentication Data to
	// send with CONNECT or with the re-authentication request (nil: none).
	Start(ctx context.Context) ([]byte, error)
	// Continue answers the broker's Authentication Data of an AUTH packet
	// asking to continue (reason 0x18); the answer goes back in an AUTH
	// packet.
	Continue(ctx context.Context, data []byte) ([]byte, error)
	// Finish receives the Authentication Data of the broker's success
	// (CONNACK, or AUTH with reason 0x00; nil when there was none). An
	// error rejects the broker (e.g. its proof does not check out): the
	// connection is closed.
	Finish(ctx context.Context, data []byte) error
}

// Reauthenticate asks the broker to authenticate the client again on the
// current connection with Options.Authenticator (MQTT 5 re-authentication,
// e.g. before a credential expires). Success is reported as
// Reauthenticated; a broker that refuses ends the connection with
// DISCONNECT (Disconnected, reconnecting as Options.Reconnect says).
// Without a connection, or while one is under way, it fails
// (RequestFailed).
type Reauthenticate struct{}

func (Reauthenticate) isRequest() {}

// Reauthenticated: a re-authentication (Reauthenticate) succeeded.
type Reauthenticated struct{}

func (Reauthenticated) isNotification() {}

// ErrAuthentication: enhanced authentication failed on the client's side:
// Options.Authenticator returned an error (the broker's proof did not
// check out, say) or the broker broke the conversation. The authenticator's
// error is wrapped too.
var ErrAuthentication = errors.New("mqttloop: enhanced authentication failed")

// Reason codes of AUTH (MQTT 5 §3.15.2.1).
const (
	authSuccess  = 0x00
	authContinue = 0x18
	authReauth   = 0x19
)

// startAuth begins a conversation: it returns CONNECT's Authentication
// Method and Data.
func (l *EventLoop) startAuth(ctx context.Context, c *packets.Connect) error {
	a := l.opts.Authenticator
	data, err := a.Start(ctx)
	if err == nil {
		err = authDataCheck(data)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	c.Properties.AuthMethod = a.Method()
	c.Properties.AuthData = data
	return nil
}

// authDataCheck refuses Authentication Data that MQTT cannot carry.
func authDataCheck(data []byte) error {
	if len(data) > mqttstr.MaxLen {
		return fmt.Errorf("the authenticator returned %d bytes of Authentication Data, at most %d fit", len(data), mqttstr.MaxLen)
	}
	return nil
}

// authPacket builds an AUTH packet of the method with reason and data.
func (l *EventLoop) authPacket(reason byte, data []byte) *packets.Auth {
	return &packets.Auth{ReasonCode: reason, Properties: &packets.Properties{
		AuthMethod: l.opts.Authenticator.Method(), AuthData: data}}
}

// continueAuth answers a broker AUTH asking to continue. It returns the
// client's AUTH, or an error that ends the connection.
func (l *EventLoop) continueAuth(ctx context.Context, p *packets.Auth) (*packets.Auth, error) {
	if l.opts.Authenticator == nil {
		return nil, fmt.Errorf("%w: AUTH without enhanced authentication", ErrProtocol)
	}
	if p.ReasonCode != authContinue {
		return nil, fmt.Errorf("%w: AUTH with reason code %#02x where 0x18 (continue) was due", ErrProtocol, p.ReasonCode)
	}
	if m := p.Properties.AuthMethod; m != l.opts.Authenticator.Method() {
		return nil, fmt.Errorf("%w: AUTH for method %q, not %q", ErrProtocol, m, l.opts.Authenticator.Method())
	}
	data, err := l.opts.Authenticator.Continue(ctx, p.Properties.AuthData)
	if err == nil {
		err = authDataCheck(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return l.authPacket(authContinue, data), nil
}

// finishAuth hands the broker's final Authentication Data to the
// authenticator.
func (l *EventLoop) finishAuth(ctx context.Context, pr *packets.Properties) error {
	var data []byte
	if pr != nil {
		if pr.AuthMethod != "" && pr.AuthMethod != l.opts.Authenticator.Method() {
			return fmt.Errorf("%w: broker ended authentication with method %q, not %q", ErrProtocol, pr.AuthMethod, l.opts.Authenticator.Method())
		}
		data = pr.AuthData
	}
	if err := l.opts.Authenticator.Finish(ctx, data); err != nil {
		return fmt.Errorf("%w: %w", ErrAuthentication, err)
	}
	return nil
}

// reauthenticate starts a re-authentication on the connection.
func (l *EventLoop) reauthenticate(r Reauthenticate) {
	switch {
	case l.opts.Authenticator == nil:
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: Reauthenticate without Options.Authenticator", ErrInvalidRequest)})
		return
	case l.phase != phaseConnected:
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: re-authentication needs a connection (the next one authenticates anyway)", ErrOffline)})
		return
	case l.reauthing:
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: a re-authentication is already under way", ErrInvalidRequest)})
		return
	}
	data, err := l.opts.Authenticator.Start(l.ctx)
	if err == nil {
		err = authDataCheck(data)
	}
	if err != nil {
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: %w", ErrAuthentication, err)})
		return
	}
	if l.write(l.authPacket(authReauth, data)) != nil {
		return
	}
	l.reauthing = true
}

// handleAuth applies an AUTH packet from the broker on an established
// connection: the next step of a re-authentication, or its success. It
// returns false if the connection ended.
func (l *EventLoop) handleAuth(p *packets.Auth) bool {
	if !l.reauthing {
		l.lost(fmt.Errorf("%w: AUTH from the broker while no re-authentication is under way", ErrProtocol))
		return false
	}
	if p.ReasonCode == authSuccess {
		l.reauthing = false
		if err := l.finishAuth(l.ctx, p.Properties); err != nil {
			l.lost(err)
			return false
		}
		l.emit(Reauthenticated{})
		return true
	}
	reply, err := l.continueAuth(l.ctx, p)
	if err != nil {
		l.lost(err)
		return false
	}
	return l.write(reply) == nil
}
