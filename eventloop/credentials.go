package eventloop

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/eclipse/paho.golang/packets"
)

// Credentials are what one connection authenticates with. Options.Credentials
// supplies them afresh before every connection attempt, for brokers that
// take short-lived tokens (JWT, SAS) as passwords.
type Credentials struct {
	// Username and Password go into CONNECT. The password never appears in
	// logs or errors. MQTT 3.1.1 allows a password only with a user name.
	Username string
	Password []byte
	// UserProperties go into CONNECT (MQTT 5 only):
	// UserProps("name", "value", ...).
	UserProperties UserProperties
	// WebSocketHeader is added to the upgrade request of ws:// and wss://
	// servers (for example Authorization: Bearer ...), replacing the values
	// of Options.WebSocketHeader for the same keys. A custom Options.Dial
	// does not see it.
	WebSocketHeader http.Header
}

// ErrCredentials: Options.Credentials returned an error, or credentials
// that the protocol version cannot carry. The attempt counts as a failed
// connection: it is reported (Reconnecting, or the end of the run) and
// retried as Options.Reconnect says. The hook's own error is wrapped too.
var ErrCredentials = errors.New("mqttloop: no credentials for the connection")

// credentials returns the credentials of the next connection: the hook's
// when Options.Credentials is set (called with ctx, which carries the
// connect deadline), else the static ones of Options.
func (l *EventLoop) credentials(ctx context.Context, server string) (Credentials, error) {
	o := &l.opts
	if o.Credentials == nil {
		return Credentials{Username: o.Username, Password: o.Password, WebSocketHeader: o.WebSocketHeader}, nil
	}
	c, err := o.Credentials(ctx, server)
	if err != nil {
		// The hook's error is the user's own; the credentials are not
		// part of any message.
		return Credentials{}, fmt.Errorf("%w for %s: %w", ErrCredentials, l.server, err)
	}
	if err := (rules{base: ErrCredentials, v: o.ProtocolVersion}).credentials(c); err != nil {
		return Credentials{}, fmt.Errorf("%w (for %s)", err, l.server)
	}
	if len(o.WebSocketHeader) > 0 {
		h := o.WebSocketHeader.Clone()
		for k, v := range c.WebSocketHeader {
			h[k] = v
		}
		c.WebSocketHeader = h
	}
	return c, nil
}

// applyCredentials puts the user name, password and user properties into
// CONNECT.
func applyCredentials(c *packets.Connect, cr Credentials) {
	if cr.Username != "" {
		c.UsernameFlag = true
		c.Username = cr.Username
	}
	if cr.Password != nil {
		c.PasswordFlag = true
		c.Password = cr.Password
	}
	if c.Properties != nil {
		c.Properties.User = cr.UserProperties.packets()
	}
}
