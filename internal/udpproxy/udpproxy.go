// Package udpproxy is a fault-injecting UDP proxy for tests, the datagram
// twin of internal/faultproxy: it sits on a loopback port between QUIC
// clients and a broker's QUIC listener and, on command, drops, delays or
// blackholes datagrams.
//
//	p := udpproxy.StartT(t, broker.QUICAddr())
//	// point the client at p.URL() instead of the broker ...
//	p.SetLoss(0.02, 1)                      // drop 2 % of datagrams, seeded
//	p.SetDelay(25 * time.Millisecond)       // one way, each direction
//	p.Blackhole(client, true)               // one client address goes silent
//
// # NAT
//
// The proxy behaves like a NAT: every client address (IP and port) it sees
// gets a UDP socket of its own towards the upstream, so a client that moves
// to a new local port appears to the server as a new address, which is what
// a NAT rebinding or a change of network looks like to it. Clients lists the
// client addresses in the order they appeared.
//
// # Faults
//
//   - Blackhole(client, on): every datagram from or to that client address is
//     dropped while it is on; other clients, including the same host on
//     another port, are not affected. BlackholeAll does it for everyone.
//   - SetLoss(rate, seed): each datagram, in either direction, is dropped
//     with probability rate, drawn from a generator seeded with seed.
//   - SetDelay(d): each datagram is forwarded d after it was read, in order.
//
// Every fault can be switched at any time from any goroutine and applies to
// the flows open at that moment as well as to later ones. Dropped datagrams
// are counted in Stats.
package udpproxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Direction is one way through the proxy.
type Direction int

const (
	// ClientToServer is the way from the clients to the upstream.
	ClientToServer Direction = iota
	// ServerToClient is the way from the upstream back to a client.
	ServerToClient
)

// String returns "client->server" or "server->client".
func (d Direction) String() string {
	if d == ServerToClient {
		return "server->client"
	}
	return "client->server"
}

// Stats are the proxy's counters. Arrays are indexed by Direction.
type Stats struct {
	// Clients counts the client addresses seen.
	Clients int
	// Forwarded counts datagrams delivered.
	Forwarded [2]int64
	// Blackholed counts datagrams dropped by a blackhole.
	Blackholed [2]int64
	// Lost counts datagrams dropped by SetLoss.
	Lost [2]int64
}

// queueLen is how many datagrams a delayed direction of one flow holds
// before it drops (counted as Lost).
const queueLen = 4096

// maxDatagram is the largest datagram the proxy forwards.
const maxDatagram = 64 << 10

// Proxy is a running UDP proxy. Its methods are safe for concurrent use.
type Proxy struct {
	upstream *net.UDPAddr
	ln       *net.UDPConn
	done     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	flows    map[netip.AddrPort]*flow
	order    []netip.AddrPort
	holes    map[netip.AddrPort]bool
	holeAll  bool
	lossRate float64
	rng      *rand.Rand
	delay    time.Duration
	stats    Stats
	statCh   chan struct{} // closed and cleared when a counter changes
}

// flow is one client address and its socket towards the upstream.
type flow struct {
	client netip.AddrPort
	up     *net.UDPConn
	queues [2]chan datagram // delayed datagrams, one queue per direction
}

type datagram struct {
	data []byte
	due  time.Time
}

// Start listens on a free UDP port of 127.0.0.1 and forwards to upstream,
// a loopback "host:port".
func Start(upstream string) (*Proxy, error) {
	ua, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		return nil, fmt.Errorf("udpproxy: upstream %q: %w", upstream, err)
	}
	if !ua.IP.IsLoopback() {
		return nil, fmt.Errorf("udpproxy: upstream %q is not a loopback address", upstream)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("udpproxy: listen: %w", err)
	}
	p := &Proxy{
		upstream: ua,
		ln:       ln,
		done:     make(chan struct{}),
		flows:    make(map[netip.AddrPort]*flow),
		holes:    make(map[netip.AddrPort]bool),
		rng:      rand.New(rand.NewSource(1)),
	}
	p.wg.Add(1)
	go p.readClients()
	return p, nil
}

// StartT is Start for a test: it fails the test if the proxy cannot start
// and closes it with t.Cleanup.
func StartT(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Addr returns the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.LocalAddr().String() }

// URL returns the proxy's address as "quic://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "quic://" + p.Addr() }

// Close stops the proxy, closes every socket and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	flows := make([]*flow, 0, len(p.flows))
	for _, f := range p.flows {
		flows = append(flows, f)
	}
	p.mu.Unlock()
	close(p.done)
	err := p.ln.Close()
	for _, f := range flows {
		_ = f.up.Close()
	}
	p.wg.Wait()
	return err
}

// Blackhole drops (on) or forwards again (off) every datagram from or to
// the client address c, in both directions.
func (p *Proxy) Blackhole(c netip.AddrPort, on bool) {
	p.mu.Lock()
	if on {
		p.holes[c] = true
	} else {
		delete(p.holes, c)
	}
	p.mu.Unlock()
}

// BlackholeAll drops (on) or forwards again (off) every datagram of every
// client, including clients that appear while it is on.
func (p *Proxy) BlackholeAll(on bool) {
	p.mu.Lock()
	p.holeAll = on
	p.mu.Unlock()
}

// SetLoss drops each datagram, in either direction, with probability rate
// (0 turns loss off), drawing from a generator seeded with seed.
func (p *Proxy) SetLoss(rate float64, seed int64) {
	p.mu.Lock()
	p.lossRate = rate
	p.rng = rand.New(rand.NewSource(seed))
	p.mu.Unlock()
}

// SetDelay forwards each datagram d after it was read, in each direction
// (so a round trip through the proxy takes 2d more). Zero turns it off.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Heal turns every fault off.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.holes = make(map[netip.AddrPort]bool)
	p.holeAll = false
	p.lossRate = 0
	p.delay = 0
	p.mu.Unlock()
}

// Clients returns the client addresses seen so far, in the order of their
// first datagram.
func (p *Proxy) Clients() []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]netip.AddrPort(nil), p.order...)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Wait blocks until cond returns true for the counters, or ctx ends. It
// calls cond at once and after each change of the counters.
func (p *Proxy) Wait(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		p.mu.Lock()
		s := p.stats
		if p.statCh == nil {
			p.statCh = make(chan struct{})
		}
		ch := p.statCh
		p.mu.Unlock()
		if cond(s) {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

func (p *Proxy) statChangedLocked() {
	if p.statCh != nil {
		close(p.statCh)
		p.statCh = nil
	}
}

// readClients reads the clients' datagrams and forwards them upstream.
func (p *Proxy) readClients() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f := p.flowFor(from)
		if f == nil {
			return
		}
		p.forward(f, ClientToServer, buf[:n])
	}
}

// flowFor returns the flow of a client address, creating it (and its
// upstream socket and reader) on its first datagram. It returns nil once
// the proxy is closed.
func (p *Proxy) flowFor(c netip.AddrPort) *flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if f := p.flows[c]; f != nil {
		return f
	}
	up, err := net.DialUDP("udp", nil, p.upstream)
	if err != nil {
		return nil
	}
	f := &flow{client: c, up: up}
	for d := range f.queues {
		f.queues[d] = make(chan datagram, queueLen)
	}
	p.flows[c] = f
	p.order = append(p.order, c)
	p.stats.Clients++
	p.statChangedLocked()
	p.wg.Add(3)
	go p.readUpstream(f)
	go p.deliver(f, ClientToServer)
	go p.deliver(f, ServerToClient)
	return f
}

// readUpstream reads what the upstream sends to one client and forwards it.
func (p *Proxy) readUpstream(f *flow) {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable and the like: keep reading.
			select {
			case <-p.done:
				return
			default:
				continue
			}
		}
		p.forward(f, ServerToClient, buf[:n])
	}
}

// forward applies the faults to one datagram and sends or queues it.
func (p *Proxy) forward(f *flow, dir Direction, data []byte) {
	p.mu.Lock()
	switch {
	case p.holeAll || p.holes[f.client]:
		p.stats.Blackholed[dir]++
		p.statChangedLocked()
		p.mu.Unlock()
		return
	case p.lossRate > 0 && p.rng.Float64() < p.lossRate:
		p.stats.Lost[dir]++
		p.statChangedLocked()
		p.mu.Unlock()
		return
	}
	delay := p.delay
	p.mu.Unlock()
	if delay <= 0 && len(f.queues[dir]) == 0 {
		p.send(f, dir, data)
		return
	}
	d := datagram{data: append([]byte(nil), data...), due: time.Now().Add(delay)}
	select {
	case f.queues[dir] <- d:
	default:
		p.mu.Lock()
		p.stats.Lost[dir]++
		p.statChangedLocked()
		p.mu.Unlock()
	}
}

// deliver sends the delayed datagrams of one direction of a flow when due.
func (p *Proxy) deliver(f *flow, dir Direction) {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var d datagram
		select {
		case d = <-f.queues[dir]:
		case <-p.done:
			return
		}
		if wait := time.Until(d.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-p.done:
				return
			}
		}
		p.send(f, dir, d.data)
	}
}

// send writes one datagram and counts it.
func (p *Proxy) send(f *flow, dir Direction, data []byte) {
	var err error
	if dir == ClientToServer {
		_, err = f.up.Write(data)
	} else {
		_, err = p.ln.WriteToUDPAddrPort(data, f.client)
	}
	if err != nil {
		return
	}
	p.mu.Lock()
	p.stats.Forwarded[dir]++
	p.statChangedLocked()
	p.mu.Unlock()
}
