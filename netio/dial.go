package netio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Default ports of the schemes whose URL names none.
const (
	DefaultPort          = "1883"  // mqtt://, tcp://
	DefaultTLSPort       = "8883"  // mqtts://, ssl://, tls://
	DefaultWSPort        = "80"    // ws://
	DefaultWSSPort       = "443"   // wss://
	DefaultQUICPort      = "14567" // quic:// (UDP)
	DefaultWebSocketPath = "/mqtt" // ws:// and wss:// URLs without a path
)

// defaultPorts maps the host-based schemes to their default port.
var defaultPorts = map[string]string{
	"mqtt": DefaultPort, "tcp": DefaultPort,
	"mqtts": DefaultTLSPort, "ssl": DefaultTLSPort, "tls": DefaultTLSPort,
	"ws": DefaultWSPort, "wss": DefaultWSSPort,
	"quic": DefaultQUICPort,
}

// ErrUnsupportedScheme means a server URL uses a scheme that Dial does
// not support.
var ErrUnsupportedScheme = errors.New("netio: unsupported URL scheme")

// ParseServer parses and checks a broker URL. Supported forms:
//
//	mqtt://host[:port]        MQTT over TCP, port 1883 by default
//	tcp://host[:port]         the same
//	mqtts://host[:port]       MQTT over TLS, port 8883 by default
//	ssl://, tls://            the same as mqtts://
//	ws://host[:port][/path]   MQTT over WebSocket, port 80, path /mqtt by default
//	wss://host[:port][/path]  MQTT over WebSocket over TLS, port 443 by default
//	quic://host[:port]        MQTT over QUIC, UDP port 14567 by default
//	unix:///path/to/sock      MQTT over a Unix domain socket
//	unix:relative/sock        the same, with a relative path
//
// For every scheme but unix the returned URL's Host always carries a port.
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
	case "ws", "wss":
		if u.Opaque != "" || u.Host == "" {
			return nil, fmt.Errorf("netio: server URL %q: no host; write %s://host:port/path", redact(u), u.Scheme)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("netio: server URL %q: no host", redact(u))
		}
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), defaultPorts[u.Scheme])
		}
		if u.Path == "" {
			u.Path = DefaultWebSocketPath
		}
	case "mqtt", "tcp", "mqtts", "ssl", "tls", "quic":
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
			port = defaultPorts[u.Scheme]
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
		return nil, fmt.Errorf("%w %q in server URL %q (supported: mqtt, tcp, mqtts, ssl, tls, ws, wss, quic, unix)", ErrUnsupportedScheme, u.Scheme, redact(u))
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
	// Dialer dials the TCP or Unix socket (and the TCP socket under TLS
	// and WebSocket). nil means a zero net.Dialer (TCP keep-alive on, no
	// timeout beyond the context's).
	Dialer *net.Dialer

	// TLS configures mqtts://, wss:// and quic://. Dial clones it and never
	// modifies the caller's value. nil means verifying the server against
	// the system roots. An empty ServerName is set to the URL's host, and
	// quic:// always uses the ALPN protocol "mqtt". Verification is skipped
	// only when the caller sets InsecureSkipVerify.
	TLS *tls.Config

	// Header is sent with the WebSocket upgrade request of ws:// and
	// wss:// (for example Authorization); the subprotocol "mqtt" is always
	// requested.
	Header http.Header

	// QUIC configures quic://.
	QUIC QUICOptions

	// Proxy, if set, returns the proxy through which to reach a server (nil:
	// directly): see ParseProxy for the kinds, FixedProxy and
	// ProxyFromEnvironment for ready-made functions. It applies to mqtt://,
	// mqtts://, ws:// and wss:// (TLS and WebSocket run inside the
	// tunnel); unix:// is always reached directly, and a quic:// server
	// with a proxy fails (these proxies carry TCP only). A tunnel is the
	// proxy's TCP socket, so readiness stays that of a socket.
	Proxy func(server *url.URL) (*url.URL, error)
}

// QUICOptions configures MQTT over QUIC.
type QUICOptions struct {
	// KeepAlive is the MQTT keepalive the connection will use. The QUIC
	// idle timeout is made at least 1.5 times as long and QUIC keepalive
	// packets are sent, so that a quiet MQTT connection is not closed by
	// QUIC first. Zero means MQTT keepalive is off: the idle timeout is
	// then quic-go's default and QUIC keepalives keep the connection up.
	KeepAlive time.Duration

	// HandshakeTimeout bounds the QUIC handshake (0: DefaultQUICHandshakeTimeout),
	// so that a network that drops UDP is noticed and the next server tried.
	// Where the network says no instead (ICMP port, host or network
	// unreachable), the dial fails at once on Linux, with an error that
	// satisfies errors.Is(err, syscall.ECONNREFUSED) (or EHOSTUNREACH,
	// ENETUNREACH), as a refused TCP dial does.
	HandshakeTimeout time.Duration

	// Enable0RTT sends the first bytes written (the CONNECT) as 0-RTT data
	// when TLS.ClientSessionCache holds a ticket for the server. If the
	// server rejects 0-RTT, the connection resends them after the
	// handshake, transparently. See EarlyDataReporter.
	Enable0RTT bool
}

// DefaultQUICHandshakeTimeout is QUICOptions.HandshakeTimeout's default.
const DefaultQUICHandshakeTimeout = 5 * time.Second

// EarlyDataReporter is implemented by connections that can send data
// before their handshake completes (QUIC with 0-RTT).
type EarlyDataReporter interface {
	// Used0RTT reports whether the server accepted the 0-RTT data. It is
	// meaningful once the handshake is complete, which it is when the
	// first bytes from the server have been read.
	Used0RTT() bool
}

// Dial opens a byte transport to the broker at server (see ParseServer
// for the accepted URLs). It only connects (and, for TLS and WebSocket,
// completes the handshakes): the MQTT CONNECT exchange is the event loop's
// job. The context bounds the dial; it has no effect on the returned
// connection. Errors name the server without its user information.
func Dial(ctx context.Context, server string, opts DialOptions) (Conn, error) {
	u, err := ParseServer(server)
	if err != nil {
		return nil, err
	}
	var c Conn
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		c, err = dialTLS(ctx, u, opts)
	case "ws", "wss":
		c, err = dialWebSocket(ctx, u, opts)
	case "quic":
		if opts.Proxy != nil {
			var p *url.URL
			if p, err = opts.Proxy(u); err == nil && p != nil {
				err = fmt.Errorf("%w: quic:// cannot go through proxy %s (it carries TCP, QUIC is UDP)", ErrProxy, redact(p))
			}
		}
		if err == nil {
			c, err = dialQUIC(ctx, u, opts)
		}
	default:
		c, err = dialSocket(ctx, u, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("netio: dial %s: %w", redact(u), err)
	}
	return c, nil
}

// dialSocket dials mqtt://, tcp:// and unix:// servers.
func dialSocket(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	nc, err := dialNet(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return WrapConn(nc), nil
}

// dialNet dials the stream socket under a URL: TCP to u.Host, or the Unix
// socket at u.Path.
func dialNet(ctx context.Context, u *url.URL, opts DialOptions) (net.Conn, error) {
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	if u.Scheme != "unix" {
		if opts.Proxy != nil {
			p, err := opts.Proxy(u)
			if err != nil {
				return nil, err
			}
			if p != nil {
				return dialProxy(ctx, d, p, u.Host)
			}
		}
		return d.DialContext(ctx, "tcp", u.Host)
	}
	// A Unix socket whose listen backlog is full refuses a non-blocking
	// connect with EAGAIN at once, where TCP would retry its SYN: many
	// clients starting together then fail for nothing. Retry until the
	// context ends, as TCP does.
	wait := time.Millisecond
	for {
		c, err := d.DialContext(ctx, "unix", u.Path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (the listen backlog stayed full)", err)
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// tlsConfigFor clones the caller's TLS configuration for a server,
// filling in the server name.
func tlsConfigFor(u *url.URL, cfg *tls.Config) *tls.Config {
	var c *tls.Config
	if cfg == nil {
		c = &tls.Config{}
	} else {
		c = cfg.Clone()
	}
	if c.ServerName == "" {
		c.ServerName = u.Hostname()
	}
	return c
}
