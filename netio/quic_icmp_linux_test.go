//go:build linux

package netio

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// closedUDP returns an address of network ("udp4" or "udp6") where no
// socket is bound, so that the kernel answers with ICMP port unreachable.
func closedUDP(t *testing.T, network, ip string) string {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	addr := c.LocalAddr().String()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestQUICRefusedFailsFast: a QUIC dial to a UDP port the network reports
// unreachable fails with ECONNREFUSED, not ErrQUICHandshakeTimeout after
// the default 5 s (issue 9, finding 12).
func TestQUICRefusedFailsFast(t *testing.T) {
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			addr := closedUDP(t, tc.network, tc.ip)
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			c, err := Dial(ctx, "quic://"+addr, DialOptions{TLS: testcerts.Get().ClientConfig()})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded to a closed port")
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrQUICHandshakeTimeout) {
				t.Fatalf("Dial: %v; want ECONNREFUSED, not the handshake timeout", err)
			}
		})
	}
}

// TestQUICICMPReportingOff: once the handshake is complete the socket no
// longer turns ICMP errors into socket errors, so that a stray one cannot
// end an established connection.
func TestQUICICMPReportingOff(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	c := dialTestQUIC(t, s.url, DialOptions{})
	rc, err := c.udp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v4, v6 int
	var e4, e6 error
	if err := rc.Control(func(fd uintptr) {
		v4, e4 = syscall.GetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_RECVERR)
		v6, e6 = syscall.GetsockoptInt(int(fd), syscall.SOL_IPV6, syscall.IPV6_RECVERR)
	}); err != nil {
		t.Fatal(err)
	}
	if e4 != nil || e6 != nil || v4 != 0 || v6 != 0 {
		t.Fatalf("after the handshake: IP_RECVERR %d (%v), IPV6_RECVERR %d (%v); want 0", v4, e4, v6, e6)
	}
}
