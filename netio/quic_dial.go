package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// quicMinIdleTimeout is the smallest QUIC idle timeout dialQUIC asks for:
// quic-go's default.
const quicMinIdleTimeout = 30 * time.Second

// quicIdleTimeout returns the QUIC idle timeout for an MQTT keepalive: at
// least 1.5 times the keepalive and never below quic-go's default.
func quicIdleTimeout(keepAlive time.Duration) time.Duration {
	idle := quicMinIdleTimeout
	if keepAlive > 0 {
		idle = max(idle, keepAlive+keepAlive/2)
	}
	return idle
}

// quicConfig returns the quic-go configuration of a client connection.
func quicConfig(opts QUICOptions, tracer func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace) *quic.Config {
	hs := opts.HandshakeTimeout
	if hs <= 0 {
		hs = DefaultQUICHandshakeTimeout
	}
	idle := quicIdleTimeout(opts.KeepAlive)
	return &quic.Config{
		HandshakeIdleTimeout: hs,
		MaxIdleTimeout:       idle,
		// A third of the idle timeout: two keepalives may be lost before
		// the connection dies. quic-go sends one only when nothing else
		// was sent for that long, and caps it at half the idle timeout
		// negotiated with the server.
		KeepAlivePeriod: idle / 3,
		// The loop does not read while a write blocks (one goroutine),
		// as over TCP, where the kernel's receive buffer (up to 6 MiB by
		// default on Linux) absorbs what the broker sends meanwhile. QUIC
		// flow control must allow as much from the start: quic-go's
		// initial 512 KiB window, grown only as the application reads,
		// deadlocks a loop that writes a large publish while the broker
		// delivers large messages to it.
		InitialStreamReceiveWindow:     quicStreamWindow,
		MaxStreamReceiveWindow:         quicStreamWindow,
		InitialConnectionReceiveWindow: quicConnWindow,
		MaxConnectionReceiveWindow:     quicConnWindow,
		Tracer:                         tracer,
	}
}

// Flow-control windows of the client (see quicConfig): quic-go's maximums.
const (
	quicStreamWindow = 6 << 20
	quicConnWindow   = 15 << 20
)

// dialQUIC dials quic://: a QUIC connection with ALPN "mqtt" whose first
// client-opened bidirectional stream, the control stream, carries every
// MQTT packet (single-stream mode).
func dialQUIC(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	tlsConf := tlsConfigFor(u, opts.TLS)
	tlsConf.NextProtos = []string{QUICALPN}

	raddr, err := resolveUDP(ctx, u.Host)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("opening UDP socket: %w", err)
	}
	// Where the network answers "unreachable" (ICMP), fail at once rather
	// than after the handshake timeout; off again once the handshake is
	// complete (settleEarly for 0-RTT). Best effort: without it the
	// handshake times out as before.
	_ = reportICMP(udp, true)
	q := &quicConn{
		udp:       udp,
		tr:        &quic.Transport{Conn: udp},
		ready:     newQUICReady(),
		hsTimeout: opts.QUIC.HandshakeTimeout,
	}
	if q.hsTimeout <= 0 {
		q.hsTimeout = DefaultQUICHandshakeTimeout
	}
	cfg := quicConfig(opts.QUIC, q.ready.tracer)
	if opts.QUIC.Enable0RTT {
		q.conn, err = q.tr.DialEarly(ctx, raddr, tlsConf, cfg)
	} else {
		q.conn, err = q.tr.Dial(ctx, raddr, tlsConf, cfg)
	}
	if err != nil {
		q.releaseSocket()
		var idle *quic.IdleTimeoutError
		if errors.As(err, &idle) {
			// No packet from the server within HandshakeIdleTimeout.
			return nil, fmt.Errorf("QUIC handshake: %w: %w", ErrQUICHandshakeTimeout, err)
		}
		return nil, fmt.Errorf("QUIC handshake with %s: %w", raddr, quicError(err))
	}
	q.early = opts.QUIC.Enable0RTT && !q.handshakeDone()
	if !q.early {
		_ = reportICMP(udp, false)
		if err := q.checkALPN(); err != nil {
			q.abort()
			return nil, err
		}
	}
	if q.stream, err = q.conn.OpenStream(); err != nil {
		q.abort()
		return nil, fmt.Errorf("opening the QUIC control stream: %w", quicError(err))
	}
	return q, nil
}

// resolveUDP resolves host:port to a UDP address.
func resolveUDP(ctx context.Context, hostport string) (*net.UDPAddr, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", portText, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(port))), nil
}
