package eventloop_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
)

// Options.Dial replaces the built-in transports: the loop speaks MQTT over
// whatever Conn it returns, and a dial error is a failed attempt like any
// other (the next server is tried at once).
func TestCustomDial(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	errRefused := errors.New("this dialer refuses the first server")
	var dialed []string
	dial := func(ctx context.Context, server string) (netio.Conn, error) {
		dialed = append(dialed, server)
		if server == "mqtt://first.invalid:1883" {
			return nil, errRefused
		}
		u, err := url.Parse(b.URL())
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		return netio.WrapConn(c), nil
	}
	c := newClient(t, "", eventloop.Options{
		Servers: []string{"mqtt://first.invalid:1883", "mqtt://second.invalid:1883"},
		Dial:    dial,
	})
	conn := c.expectConnected()
	if conn.Server != "mqtt://second.invalid:1883" || conn.Transport != "tcp" {
		t.Fatalf("connected to %s over %s", conn.Server, conn.Transport)
	}
	if len(dialed) != 2 {
		t.Fatalf("dialed %v, want both servers once", dialed)
	}
	c.subscribe(eventloop.Filter{Topic: "dial/x", QoS: 1})
	c.send(eventloop.Publish{Topic: "dial/x", QoS: 1, Payload: []byte("over a custom dial")})
	if m := expect[eventloop.Message](c); string(m.Payload) != "over a custom dial" {
		t.Fatalf("got %q", m.Payload)
	}
}

// A Dial that fails everywhere ends the run with its error.
func TestCustomDialFails(t *testing.T) {
	errNope := errors.New("no route today")
	c := newClient(t, "", eventloop.Options{
		Servers: []string{"mqtt://a.invalid:1883"},
		Dial:    func(context.Context, string) (netio.Conn, error) { return nil, errNope },
	})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, errNope)
}
