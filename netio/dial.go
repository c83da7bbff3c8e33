package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultPort is the port of mqtt:// and tcp:// servers whose URL names
// none.
const DefaultPort = "1883"

// ParseServer parses and checks a broker URL. Supported forms:
//
//	mqtt://host[:port]   MQTT over TCP, port 1883 by default
//	tcp://host[:port]    the same
//	unix:///path/to/sock MQTT over a Unix domain socket
//	unix:relative/sock   the same, with a relative path
//
// For mqtt:// and tcp:// the returned URL's Host always carries a port.
// The user information (user:password@) is kept in the returned URL but
// never appears in errors. Any other scheme gives an error wrapping
// ErrUnsupportedScheme.
func ParseServer(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error repeats the raw URL, password included.
			err = ue.Err
		}
		return nil, fmt.Errorf("netio: server URL %q: %w", redactRaw(raw), err)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		if u.Opaque != "" || u.Host == "" {
			return nil, fmt.Errorf("netio: server URL %q: no host; write %s://host:port", redact(u), u.Scheme)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("netio: server URL %q: unexpected path %q for %s://", redact(u), u.Path, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return nil, fmt.Errorf("netio: server URL %q: no host", redact(u))
		}
		if port == "" {
			port = DefaultPort
		}
		u.Host = net.JoinHostPort(host, port)
		u.Path = ""
	case "unix":
		switch {
		case u.Opaque != "":
			u.Path, u.Opaque = u.Opaque, ""
		case u.Host != "":
			return nil, fmt.Errorf("netio: server URL %q: unix URLs take a path, not a host; write unix:///absolute/path or unix:relative/path", redact(u))
		}
		if u.Path == "" {
			return nil, fmt.Errorf("netio: server URL %q: no socket path", redact(u))
		}
	case "":
		return nil, fmt.Errorf("%w: none in server URL %q; write mqtt://host:port", ErrUnsupportedScheme, redact(u))
	default:
		return nil, fmt.Errorf("%w %q in server URL %q (supported: mqtt, tcp, unix)", ErrUnsupportedScheme, u.Scheme, redact(u))
	}
	return u, nil
}

// redact returns u as text without user information.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// redactRaw removes the user information from a URL that url.Parse
// rejected.
func redactRaw(raw string) string {
	rest := raw
	prefix := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	return prefix + rest
}

// DialOptions configures Dial.
type DialOptions struct {
	// Dialer dials the TCP or Unix socket. nil means a zero net.Dialer
	// (TCP keep-alive on, no timeout beyond the context's).
	Dialer *net.Dialer
}

// Dial opens a byte transport to the broker at server (see ParseServer
// for the accepted URLs) and wraps it with WrapConn. It only connects: the
// MQTT CONNECT exchange is the event loop's job. The context bounds the
// dial; it has no effect on the returned connection. Errors name the
// server without its user information.
func Dial(ctx context.Context, server string, opts DialOptions) (Conn, error) {
	u, err := ParseServer(server)
	if err != nil {
		return nil, err
	}
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	network, addr := "tcp", u.Host
	if u.Scheme == "unix" {
		network, addr = "unix", u.Path
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("netio: dial %s: %w", redact(u), err)
	}
	return WrapConn(c), nil
}
