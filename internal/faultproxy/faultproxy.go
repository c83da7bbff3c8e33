package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"
)

// Direction is one way of the byte stream through the proxy.
type Direction int

const (
	// ClientToServer is the stream from the side that connected to the
	// proxy towards the upstream server.
	ClientToServer Direction = iota
	// ServerToClient is the stream from the upstream server back to the
	// client.
	ServerToClient
)

// String returns "client->server" or "server->client".
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client->server"
	case ServerToClient:
		return "server->client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// check panics on a value that is not one of the two directions.
func (d Direction) check() Direction {
	if d != ClientToServer && d != ServerToClient {
		panic(fmt.Sprintf("faultproxy: invalid %v", d))
	}
	return d
}

// CutMode is how CutAfter and CutEvery close connections.
type CutMode int

const (
	// CutFIN closes the sockets normally: the sides read EOF (or a reset
	// if they had sent bytes the proxy had not read yet).
	CutFIN CutMode = iota
	// CutRST closes the sockets with SO_LINGER 0, which sends a TCP reset:
	// the sides' reads and writes fail with ECONNRESET or EPIPE.
	CutRST
)

// String returns "FIN" or "RST".
func (m CutMode) String() string {
	if m == CutRST {
		return "RST"
	}
	return "FIN"
}

// Shaping is how the bytes of one direction are delivered.
type Shaping struct {
	// Delay holds every chunk until this long after the proxy read it.
	Delay time.Duration
	// ChunkSize is the largest number of bytes written at a time; each
	// piece is a separate Write. Zero or less means as read (up to 32 KiB).
	ChunkSize int
	// ChunkGap is a pause after each Write, so that the receiver reads the
	// pieces separately even if it reads slowly. Zero means none.
	ChunkGap time.Duration
}

// Stats are the proxy's counters. Arrays are indexed by Direction.
type Stats struct {
	// Connections counts accepted connections, refused ones included.
	Connections int
	// Refused counts connections closed at once because of Refuse.
	Refused int
	// Active counts connections open now (those still dialing the upstream
	// included).
	Active int
	// Cuts counts connections closed by CutAll, ResetAll, CutAfter or
	// CutEvery. When it grows, the connections it counts have already left
	// Active.
	Cuts int
	// Received counts bytes read from the sending side of each direction.
	Received [2]int64
	// Forwarded counts bytes written to the receiving side of each
	// direction. A Write is counted after its OnChunk call has returned,
	// so the receiver may read bytes a moment before they are counted.
	Forwarded [2]int64
	// Discarded counts bytes dropped by the blackhole in each direction.
	Discarded [2]int64
}

const (
	readSize    = 32 << 10         // largest chunk a reader queues
	queueLen    = 256              // chunks queued per direction before reading stops
	dialTimeout = 10 * time.Second // failure guard for dialing the upstream
)

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	upstream string
	ln       *net.TCPListener
	done     chan struct{} // closed by Close
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	links     map[*link]struct{}
	cfgCh     chan struct{} // closed and cleared when a setting changes
	statCh    chan struct{} // closed and cleared when a counter changes
	stats     Stats
	refuse    bool
	paused    bool
	blackhole bool
	stalled   bool
	shape     [2]Shaping
	cutMode   CutMode
	after     [2]cutAfter
	every     cutEvery
	onChunk   func(Direction, int)
}

type cutAfter struct {
	armed bool
	left  int
}

type cutEvery struct {
	on       bool
	rng      *rand.Rand
	min, max int
	left     int
}

func (e *cutEvery) draw() {
	e.left = e.min + e.rng.Intn(e.max-e.min+1)
}

// Start listens on a free port of 127.0.0.1 and forwards every accepted
// connection to upstream, a loopback "host:port" ("localhost", 127.0.0.0/8
// or ::1).
func Start(upstream string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("faultproxy: upstream %q is not a loopback address", upstream)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		upstream: upstream,
		ln:       ln,
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		links:    make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// StartT is Start for a test: it fails the test if the proxy cannot start
// and closes the proxy with t.Cleanup.
func StartT(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("faultproxy: close: %v", err)
		}
	})
	return p
}

// Addr returns the proxy's address, "127.0.0.1:PORT".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns the proxy's address as "mqtt://127.0.0.1:PORT".
func (p *Proxy) URL() string { return "mqtt://" + p.Addr() }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Close stops accepting, closes every connection (both sides) and waits
// until all the proxy's goroutines have returned. Connections held by
// PauseAccept are closed too. Calling it again returns nil. It must not be
// called from an OnChunk function.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := p.linksLocked()
	p.cfgChangedLocked()
	p.mu.Unlock()

	close(p.done)
	p.cancel()
	err := p.ln.Close()
	for _, l := range links {
		l.cut(CutFIN)
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close: %w", err)
	}
	return nil
}

// CutAll closes every open connection now, both sides at once, with FIN
// (see CutFIN), and returns how many it closed. New connections are not
// affected.
func (p *Proxy) CutAll() int { return p.cutAll(CutFIN) }

// ResetAll is CutAll with a TCP reset (see CutRST).
func (p *Proxy) ResetAll() int { return p.cutAll(CutRST) }

func (p *Proxy) cutAll(mode CutMode) int {
	p.mu.Lock()
	links := p.linksLocked()
	p.mu.Unlock()
	return p.cutLinks(links, mode)
}

// cutLinks cuts links as a fault and counts the ones it closed.
func (p *Proxy) cutLinks(links []*link, mode CutMode) int {
	n := 0
	for _, l := range links {
		if l.cut(mode) {
			n++
		}
	}
	if n > 0 {
		p.mu.Lock()
		p.stats.Cuts += n
		p.statChangedLocked()
		p.mu.Unlock()
	}
	return n
}

// CutAfter arms a one-shot cut: once n more bytes have been forwarded in
// direction dir, the connection that carried the last of them is closed
// (with the mode of SetCutMode), right after those bytes were written and
// before anything more is forwarded on it either way. The count covers the
// connections open now and later ones, so with a single client it cuts the
// current connection or, if that ends first, the next. n = 0 cuts the next
// connection that has a byte to forward in dir, forwarding nothing. A new
// call replaces an armed one; Heal disarms it.
func (p *Proxy) CutAfter(dir Direction, n int) {
	if n < 0 {
		panic("faultproxy: CutAfter with a negative count")
	}
	p.mu.Lock()
	p.after[dir.check()] = cutAfter{armed: true, left: n}
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// CutEvery cuts all open connections each time a number of bytes drawn at
// random from [minBytes, maxBytes] has been forwarded client to server since
// the previous such cut (or since this call). The cut falls exactly at that
// byte count, so usually in the middle of a packet: the connection carrying
// the byte gets it and no more, and no other connection forwards anything
// once the count is reached. Counts are drawn with
// minBytes + rand.New(rand.NewSource(seed)).Intn(maxBytes-minBytes+1), one per
// cut in order, so the same seed and the same client byte stream give the
// same cuts. Bytes dropped by the blackhole do not count. Connections are
// closed with the mode of SetCutMode. It panics unless 1 <= minBytes <=
// maxBytes. StopCutEvery or Heal turn it off.
func (p *Proxy) CutEvery(seed int64, minBytes, maxBytes int) {
	if minBytes < 1 || maxBytes < minBytes {
		panic(fmt.Sprintf("faultproxy: CutEvery(%d, %d): need 1 <= min <= max", minBytes, maxBytes))
	}
	e := cutEvery{on: true, rng: rand.New(rand.NewSource(seed)), min: minBytes, max: maxBytes}
	e.draw()
	p.mu.Lock()
	p.every = e
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// StopCutEvery turns CutEvery off.
func (p *Proxy) StopCutEvery() {
	p.mu.Lock()
	p.every = cutEvery{}
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// SetCutMode sets how CutAfter and CutEvery close connections (CutFIN at
// first).
func (p *Proxy) SetCutMode(mode CutMode) {
	p.mu.Lock()
	p.cutMode = mode
	p.mu.Unlock()
}

// Blackhole turns the blackhole on or off. While it is on, nothing is
// delivered in either direction and the connections stay open: bytes the
// proxy reads are dropped (see Stats.Discarded) rather than delivered later,
// and a side's close is held back until it is off. To each side, the other
// has gone silent: a half-open connection. Connections accepted while it is
// on are dialed upstream as usual and get nothing either. Bytes dropped are
// gone, so when it is turned off the receiver sees the stream resume at a
// later byte, possibly in the middle of a packet; to heal without that, call
// CutAll before turning it off, or use Stall instead.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// BlackholeOpen blackholes the connections open now, for good, and returns
// how many: they behave as under Blackhole(true) until they are closed,
// while later connections are served normally. To a client this is a
// network path that died (a change of network, a NAT that forgot the
// mapping): the old connection goes silent, a new one works.
func (p *Proxy) BlackholeOpen() int {
	p.mu.Lock()
	for l := range p.links {
		l.holed = true
	}
	n := len(p.links)
	p.cfgChangedLocked()
	p.mu.Unlock()
	return n
}

// Stall stops (on) or resumes (off) all forwarding without dropping
// anything: the proxy stops reading and writing, so the bytes wait in the
// kernel buffers and the senders' writes block once those are full. When
// it is turned off, everything is delivered intact and in order. A side's
// close is not seen while stalled.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	p.stalled = on
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// SetDelay delays each chunk in both directions until d after the proxy
// read it. Zero turns the delay off.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.shape[ClientToServer].Delay = d
	p.shape[ServerToClient].Delay = d
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// SetChunkSize makes both directions write at most n bytes per Write (1
// delivers byte at a time). Zero or less turns the limit off.
func (p *Proxy) SetChunkSize(n int) {
	p.mu.Lock()
	p.shape[ClientToServer].ChunkSize = n
	p.shape[ServerToClient].ChunkSize = n
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// SetChunkGap makes both directions pause d after each Write. Zero turns
// it off.
func (p *Proxy) SetChunkGap(d time.Duration) {
	p.mu.Lock()
	p.shape[ClientToServer].ChunkGap = d
	p.shape[ServerToClient].ChunkGap = d
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// SetShaping sets delay, chunk size and gap of one direction.
func (p *Proxy) SetShaping(dir Direction, s Shaping) {
	p.mu.Lock()
	p.shape[dir.check()] = s
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// Refuse turns refusing on or off. While it is on, new connections are
// accepted and closed at once without dialing the upstream: the port is
// open but the "broker" hangs up (the client reads EOF, or a reset if it
// had already sent bytes). Open connections are not affected.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// PauseAccept stops (on) or resumes (off) taking new connections. While
// paused, new connections complete their TCP handshake in the kernel's
// backlog (the client's dial succeeds) but the proxy neither dials the
// upstream for them nor reads from them, as with a broker that hangs; when
// resumed they are served normally (or refused, if Refuse is on). They are
// counted in Stats when the pause ends. Open connections are not affected.
func (p *Proxy) PauseAccept(on bool) {
	p.mu.Lock()
	p.paused = on
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// Heal turns every fault off: blackhole, stall, refusing, paused accepting,
// delays, chunking, and armed CutAfter and CutEvery. The cut mode and the
// OnChunk function stay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.blackhole, p.stalled, p.refuse, p.paused = false, false, false, false
	p.shape = [2]Shaping{}
	p.after = [2]cutAfter{}
	p.every = cutEvery{}
	p.cfgChangedLocked()
	p.mu.Unlock()
}

// OnChunk sets a function called after each Write the proxy makes, with
// its direction and byte count (nil removes it). It runs on the proxy's
// goroutine for that connection and direction, concurrently with others
// for other connections; nothing more is forwarded in that direction of
// that connection until it returns, and Stats.Forwarded counts the Write
// only then (so a test that waits for Forwarded to reach a count has seen
// every call for those bytes). It may call the Proxy's methods, CutAll
// included, but not Close.
func (p *Proxy) OnChunk(f func(dir Direction, n int)) {
	p.mu.Lock()
	p.onChunk = f
	p.mu.Unlock()
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statsLocked()
}

func (p *Proxy) statsLocked() Stats {
	s := p.stats
	s.Active = len(p.links)
	return s
}

// Connections returns the number of connections accepted so far.
func (p *Proxy) Connections() int { return p.Stats().Connections }

// Active returns the number of connections open now.
func (p *Proxy) Active() int { return p.Stats().Active }

// Cuts returns the number of connections closed by faults so far.
func (p *Proxy) Cuts() int { return p.Stats().Cuts }

// Forwarded returns the number of bytes delivered in direction dir so far.
func (p *Proxy) Forwarded(dir Direction) int64 { return p.Stats().Forwarded[dir.check()] }

// Discarded returns the number of bytes the blackhole dropped in direction
// dir so far.
func (p *Proxy) Discarded(dir Direction) int64 { return p.Stats().Discarded[dir.check()] }

// Wait blocks until cond returns true for the counters, or ctx ends. It
// calls cond at once and after each change of the counters, and returns the
// counters cond saw last, with ctx.Err() if it gave up.
func (p *Proxy) Wait(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		p.mu.Lock()
		s := p.statsLocked()
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

func (p *Proxy) cfgChangedLocked() {
	if p.cfgCh != nil {
		close(p.cfgCh)
		p.cfgCh = nil
	}
}

// waitCfg waits until ok, called with p.mu held, returns true; it returns
// false if done is closed first.
func (p *Proxy) waitCfg(done <-chan struct{}, ok func() bool) bool {
	for {
		p.mu.Lock()
		if ok() {
			p.mu.Unlock()
			return true
		}
		if p.cfgCh == nil {
			p.cfgCh = make(chan struct{})
		}
		ch := p.cfgCh
		p.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

func (p *Proxy) linksLocked() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error such as running out of file descriptors:
			// try again shortly.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
				continue
			case <-p.done:
				t.Stop()
				return
			}
		}
		if !p.waitCfg(p.done, func() bool { return !p.paused }) {
			_ = c.Close()
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.stats.Connections++
		if p.refuse {
			p.stats.Refused++
			p.statChangedLocked()
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		l := &link{p: p, client: c, done: make(chan struct{})}
		p.links[l] = struct{}{}
		p.statChangedLocked()
		p.wg.Add(1)
		p.mu.Unlock()
		go l.connect()
	}
}

// link is one proxied connection: the accepted client socket and the socket
// to the upstream.
type link struct {
	p      *Proxy
	client *net.TCPConn
	done   chan struct{} // closed when the link is cut

	// Guarded by p.mu.
	server *net.TCPConn
	closed bool
	doomed bool // a cut is decided: forward nothing more
	ended  int  // directions whose EOF was passed on
	holed  bool // blackholed by BlackholeOpen
}

type chunk struct {
	data []byte
	at   time.Time // when it was read
	err  error     // set on the last chunk of a direction: io.EOF or the read error
}

// cut closes both sockets and removes the link; it reports whether this
// call did it. It must be called without p.mu held.
func (l *link) cut(mode CutMode) bool {
	p := l.p
	p.mu.Lock()
	if l.closed {
		p.mu.Unlock()
		return false
	}
	l.closed = true
	delete(p.links, l)
	server := l.server
	p.statChangedLocked()
	p.mu.Unlock()

	close(l.done)
	if mode == CutRST {
		_ = l.client.SetLinger(0)
		if server != nil {
			_ = server.SetLinger(0)
		}
	}
	_ = l.client.Close()
	if server != nil {
		_ = server.Close()
	}
	return true
}

// connect dials the upstream and then runs the client-to-server reader.
func (l *link) connect() {
	p := l.p
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		// Upstream down: hang up on the client, unless the blackhole hides
		// that for now.
		if p.waitCfg(l.done, func() bool { return !p.blackhole }) {
			l.cut(CutFIN)
		}
		return
	}
	server := c.(*net.TCPConn)
	p.mu.Lock()
	if l.closed {
		p.mu.Unlock()
		_ = server.Close()
		return
	}
	l.server = server
	p.wg.Add(3)
	p.mu.Unlock()

	c2s := make(chan chunk, queueLen)
	s2c := make(chan chunk, queueLen)
	go l.writer(ClientToServer, c2s, server)
	go l.writer(ServerToClient, s2c, l.client)
	go func() {
		defer p.wg.Done()
		l.reader(ServerToClient, server, s2c)
	}()
	l.reader(ClientToServer, l.client, c2s)
}

// reader reads what one side sends and queues it for the writer of dir.
func (l *link) reader(dir Direction, src *net.TCPConn, q chan<- chunk) {
	p := l.p
	buf := make([]byte, readSize)
	for {
		if !p.waitCfg(l.done, func() bool { return !p.stalled }) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.stats.Received[dir] += int64(n)
			p.statChangedLocked()
			p.mu.Unlock()
			select {
			case q <- chunk{data: append([]byte(nil), buf[:n]...), at: time.Now()}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			select {
			case q <- chunk{at: time.Now(), err: err}:
			case <-l.done:
			}
			return
		}
	}
}

// writer delivers the chunks of dir to dst, applying the faults.
func (l *link) writer(dir Direction, q <-chan chunk, dst *net.TCPConn) {
	p := l.p
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var c chunk
		select {
		case c = <-q:
		case <-l.done:
			return
		}
		if !l.waitDue(dir, c.at, timer) {
			return
		}
		if c.err != nil {
			l.end(c.err, dst)
			return
		}
		for data := c.data; len(data) > 0; {
			if !p.waitCfg(l.done, func() bool { return !p.stalled }) {
				return
			}
			size, n, gap, victims, mode := l.reserve(dir, len(data))
			if size < 0 { // doomed: the cut is coming
				<-l.done
				return
			}
			if n > 0 {
				if _, err := dst.Write(data[:n]); err != nil {
					p.cutLinks(victims, mode)
					l.cut(CutRST)
					return
				}
				p.mu.Lock()
				f := p.onChunk
				p.mu.Unlock()
				if f != nil {
					f(dir, n)
				}
				p.mu.Lock()
				p.stats.Forwarded[dir] += int64(n)
				p.statChangedLocked()
				p.mu.Unlock()
			}
			if victims != nil {
				p.cutLinks(victims, mode)
				return
			}
			data = data[size:]
			if n > 0 && gap > 0 && !l.sleep(gap, timer) {
				return
			}
		}
	}
}

// reserve decides what happens to the next piece of at most avail bytes in
// direction dir. It returns the piece's size (consumed from the chunk, or
// -1 if the link is doomed), how many of its bytes to write (0 if the
// blackhole took them), the gap to wait after writing, and the links to cut
// once the bytes are written, with the mode.
func (l *link) reserve(dir Direction, avail int) (size, n int, gap time.Duration, victims []*link, mode CutMode) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.doomed || l.closed {
		return -1, 0, 0, nil, 0
	}
	sh := p.shape[dir]
	size = avail
	if sh.ChunkSize > 0 && size > sh.ChunkSize {
		size = sh.ChunkSize
	}
	if p.blackhole || l.holed {
		p.stats.Discarded[dir] += int64(size)
		p.statChangedLocked()
		return size, 0, 0, nil, 0
	}
	n = size
	a := &p.after[dir]
	if a.armed {
		n = min(n, a.left)
	}
	e := &p.every
	counted := dir == ClientToServer && e.on
	if counted {
		n = min(n, e.left)
	}
	mode = p.cutMode
	if a.armed {
		a.left -= n
		if a.left == 0 {
			*a = cutAfter{}
			l.doomed = true
			victims = []*link{l}
		}
	}
	if counted {
		e.left -= n
		if e.left == 0 {
			e.draw()
			victims = p.linksLocked()
			for _, v := range victims {
				v.doomed = true
			}
		}
	}
	return size, n, sh.ChunkGap, victims, mode
}

// waitDue waits until the chunk read at at is due in direction dir. It
// returns false if the link was cut first.
func (l *link) waitDue(dir Direction, at time.Time, timer *time.Timer) bool {
	p := l.p
	for {
		p.mu.Lock()
		wait := time.Until(at.Add(p.shape[dir].Delay))
		if wait <= 0 {
			p.mu.Unlock()
			return true
		}
		if p.cfgCh == nil {
			p.cfgCh = make(chan struct{})
		}
		ch := p.cfgCh
		p.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
			return true
		case <-ch: // the delay may have changed
			timer.Stop()
		case <-l.done:
			timer.Stop()
			return false
		}
	}
}

// sleep waits d; it returns false if the link was cut first.
func (l *link) sleep(d time.Duration, timer *time.Timer) bool {
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-l.done:
		timer.Stop()
		return false
	}
}

// end passes on the end of a direction (err from its reader) once the
// blackhole and stall allow: EOF half-closes dst, anything else resets the
// link.
func (l *link) end(err error, dst *net.TCPConn) {
	p := l.p
	if !p.waitCfg(l.done, func() bool { return !p.blackhole && !l.holed && !p.stalled && !l.doomed }) {
		return
	}
	if !errors.Is(err, io.EOF) {
		l.cut(CutRST)
		return
	}
	_ = dst.CloseWrite()
	p.mu.Lock()
	l.ended++
	both := l.ended == 2
	p.mu.Unlock()
	if both {
		l.cut(CutFIN)
	}
}
