package udpproxy

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
)

// guard bounds every wait of these tests; they finish as soon as they can.
const guard = 20 * time.Second

// echo is a UDP server that sends every datagram back to its sender.
func echo(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func dial(t *testing.T, p *Proxy) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(p.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads the echo, failing after d.
func roundTrip(c *net.UDPConn, msg []byte, d time.Duration) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	return buf[:n], err
}

func TestForwardsAndIsolatesClients(t *testing.T) {
	before := leakcheck.Snapshot()
	e := echo(t)
	p, err := Start(e.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, b := dial(t, p), dial(t, p)
	for _, c := range []*net.UDPConn{a, b} {
		got, err := roundTrip(c, []byte("hello"), guard)
		if err != nil || !bytes.Equal(got, []byte("hello")) {
			t.Fatalf("echo: %q, %v", got, err)
		}
	}
	clients := p.Clients()
	if len(clients) != 2 || clients[0] != a.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("clients %v", clients)
	}

	// Blackhole a: its datagram is dropped, b still gets through.
	p.Blackhole(clients[0], true)
	if _, err := a.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if _, err := p.Wait(ctx, func(s Stats) bool { return s.Blackholed[ClientToServer] == 1 }); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(b, []byte("b"), guard); err != nil || string(got) != "b" {
		t.Fatalf("b while a is blackholed: %q, %v", got, err)
	}
	p.Blackhole(clients[0], false)
	if got, err := roundTrip(a, []byte("back"), guard); err != nil || string(got) != "back" {
		t.Fatalf("a after the blackhole: %q, %v", got, err)
	}

	// The upstream sees each client from a port of its own (a NAT). The
	// proxy counts a datagram after writing it, so the echo of "back" can
	// reach a before it is counted: wait for the count.
	want := func(s Stats) bool {
		return s.Clients == 2 && s.Forwarded[ClientToServer] == 4 && s.Forwarded[ServerToClient] == 4
	}
	if s, err := p.Wait(ctx, want); err != nil {
		t.Fatalf("stats %+v: %v", s, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	e.Close()
	if left := leakcheck.Wait(before, leakcheck.DefaultTimeout, leakcheck.Standard()...); len(left) > 0 {
		t.Fatalf("left running:\n%s", leakcheck.Report(left))
	}
}

func TestLossIsSeededAndDelayKeepsOrder(t *testing.T) {
	e := echo(t)
	p := StartT(t, e.LocalAddr().String())
	c := dial(t, p)
	p.SetLoss(1, 7) // everything
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if _, err := p.Wait(ctx, func(s Stats) bool { return s.Lost[ClientToServer] == 1 }); err != nil {
		t.Fatal(err)
	}
	p.SetLoss(0, 0)
	p.SetDelay(time.Millisecond)
	for i := 0; i < 20; i++ {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 16)
	_ = c.SetReadDeadline(time.Now().Add(guard))
	for i := 0; i < 20; i++ {
		n, err := c.Read(buf)
		if err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %v %v", i, buf[:n], err)
		}
	}
}
