package netio

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"

	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// quicTestServer is a quic-go server on loopback for the client tests.
// Each connection's first stream is handed to handle on a goroutine of
// the test.
type quicTestServer struct {
	url  string
	ln   *quic.EarlyListener
	tr   *quic.Transport
	pc   *dropConn
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen [][]byte // what each connection's handler read, when it records
}

type quicServerOptions struct {
	alpn      []string // default ["mqtt"]
	allow0RTT bool
	maxIdle   time.Duration
	droppable bool // serve through a dropConn (quic-go then warns that it cannot size the buffers)
	// handle serves one connection's first stream; nil echoes.
	handle func(s *quicTestServer, conn *quic.Conn, st *quic.Stream)
}

// dropConn is a UDP socket that can be made to drop every datagram in
// both directions, as a server that stops answering.
type dropConn struct {
	*net.UDPConn
	drop atomic.Bool
}

func (d *dropConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.UDPConn.ReadFrom(p)
		if err != nil || !d.drop.Load() {
			return n, a, err
		}
	}
}

func (d *dropConn) WriteTo(p []byte, a net.Addr) (int, error) {
	if d.drop.Load() {
		return len(p), nil
	}
	return d.UDPConn.WriteTo(p, a)
}

func startQUICServer(t testing.TB, o quicServerOptions) *quicTestServer {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &quicTestServer{pc: &dropConn{UDPConn: udp}}
	s.tr = &quic.Transport{Conn: udp}
	if o.droppable {
		// Only net.PacketConn's methods, so quic-go uses ReadFrom/WriteTo.
		s.tr = &quic.Transport{Conn: struct{ net.PacketConn }{s.pc}}
	}
	tlsConf := testcerts.Get().ServerConfig(testcerts.Get().Server, false)
	tlsConf.NextProtos = o.alpn
	if tlsConf.NextProtos == nil {
		tlsConf.NextProtos = []string{QUICALPN}
	}
	s.ln, err = s.tr.ListenEarly(tlsConf, &quic.Config{Allow0RTT: o.allow0RTT, MaxIdleTimeout: o.maxIdle})
	if err != nil {
		t.Fatal(err)
	}
	s.url = "quic://" + udp.LocalAddr().String()
	handle := o.handle
	if handle == nil {
		handle = echo
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := s.ln.Accept(context.Background())
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				st, err := conn.AcceptStream(context.Background())
				if err != nil {
					_ = conn.CloseWithError(0, "")
					return
				}
				handle(s, conn, st)
				<-conn.Context().Done()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = s.ln.Close()
		_ = s.tr.Close()
		_ = udp.Close()
		s.wg.Wait()
	})
	return s
}

// echo copies the stream back until the client's FIN, records what it
// read, then ends its side and waits for the client to close.
func echo(s *quicTestServer, conn *quic.Conn, st *quic.Stream) {
	var got bytes.Buffer
	_, _ = io.Copy(io.MultiWriter(st, &got), st)
	s.mu.Lock()
	s.seen = append(s.seen, got.Bytes())
	s.mu.Unlock()
	_ = st.Close()
}

func (s *quicTestServer) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.seen...)
}

func dialTestQUIC(t testing.TB, url string, o DialOptions) *quicConn {
	t.Helper()
	if o.TLS == nil {
		o.TLS = testcerts.Get().ClientConfig()
	}
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c, err := Dial(ctx, url, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*quicConn)
}

// readArmed reads want bytes the way the event loop does: ReadNow, and
// when it finds nothing, Arm, ReadNow once more, then wait for the
// readiness signal.
func readArmed(t testing.TB, c Conn, want int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for len(got) < want {
		n, err := c.ReadNow(buf)
		if err != nil {
			t.Fatalf("ReadNow: %v", err)
		}
		if n > 0 {
			got = append(got, buf[:n]...)
			continue
		}
		rd, err := c.Arm()
		if err != nil {
			t.Fatal(err)
		}
		n, err = c.ReadNow(buf)
		if err != nil {
			t.Fatalf("ReadNow: %v", err)
		}
		if n > 0 {
			got = append(got, buf[:n]...)
			c.Disarm()
			continue
		}
		select {
		case <-rd.Signal:
		case <-rd.Tick:
		case <-timer.C:
			t.Fatalf("no readiness signal: have %q of %d bytes", got, want)
		}
		c.Disarm()
	}
	return got
}

func TestQUICEcho(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	c := dialTestQUIC(t, s.url, DialOptions{})
	if c.Transport() != "quic" {
		t.Fatalf("Transport() = %q", c.Transport())
	}
	if c.Used0RTT() {
		t.Fatal("Used0RTT without 0-RTT")
	}
	msg := bytes.Repeat([]byte("0123456789"), 30000) // several packets and flow-control updates
	if err := c.SetWriteDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if got := readArmed(t, c, len(msg)); !bytes.Equal(got, msg) {
		t.Fatalf("echo differs: %d bytes back", len(got))
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.ReadNow(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadNow after Close: %v", err)
	}
	if _, err := c.udp.WriteTo([]byte{0}, c.udp.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("UDP socket still open after Close: %v", err)
	}
	// Graceful close: the server read everything up to our FIN.
	s.ln.Close()
	s.wg.Wait()
	if r := s.received(); len(r) != 1 || !bytes.Equal(r[0], msg) {
		t.Fatalf("server received %d streams", len(r))
	}
}

func TestQUICConfig(t *testing.T) {
	for _, tc := range []struct {
		keepAlive, idle time.Duration
	}{
		{0, 30 * time.Second},
		{-1, 30 * time.Second},
		{10 * time.Second, 30 * time.Second},
		{60 * time.Second, 90 * time.Second},
	} {
		cfg := quicConfig(QUICOptions{KeepAlive: tc.keepAlive}, nil)
		if cfg.MaxIdleTimeout != tc.idle || cfg.KeepAlivePeriod <= 0 || cfg.KeepAlivePeriod >= cfg.MaxIdleTimeout/2 {
			t.Errorf("keepalive %v: idle %v, keepalive period %v", tc.keepAlive, cfg.MaxIdleTimeout, cfg.KeepAlivePeriod)
		}
		if cfg.HandshakeIdleTimeout != DefaultQUICHandshakeTimeout {
			t.Errorf("handshake timeout %v", cfg.HandshakeIdleTimeout)
		}
	}
	if cfg := quicConfig(QUICOptions{HandshakeTimeout: time.Second}, nil); cfg.HandshakeIdleTimeout != time.Second {
		t.Errorf("handshake timeout %v", cfg.HandshakeIdleTimeout)
	}
}

func TestQUICALPNRequired(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{alpn: []string{"not-mqtt"}})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c, err := Dial(ctx, s.url, DialOptions{TLS: testcerts.Get().ClientConfig()})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a server without ALPN mqtt")
	}
	if !errors.Is(err, ErrQUICALPN) {
		t.Fatalf("error %v is not ErrQUICALPN", err)
	}
}

func TestQUICVerifiesServer(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	// The system roots do not know the test CA.
	c, err := Dial(ctx, s.url, DialOptions{})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with an unknown CA")
	}
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("error %v is not an unknown authority error", err)
	}
}

// TestQUICReadiness checks both halves of the readiness contract: Arm's
// signal fires when bytes arrive later, and bytes already buffered in the
// stream when Arm is called (no further packet will come to fire the
// tracer) are not stranded: the ReadNow that follows Arm finds them, or,
// when the tracer has not yet recorded the packet that carried them, the
// signal comes (see TestQUICReadyLagging).
func TestQUICReadiness(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	c := dialTestQUIC(t, s.url, DialOptions{})
	buf := make([]byte, 64)

	// Armed before the bytes arrive.
	rd, err := c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadNow(buf); n != 0 || err != nil {
		t.Fatalf("ReadNow with nothing sent: %d, %v", n, err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rd.Signal:
	case <-time.After(guard):
		t.Fatal("no signal after the echo arrived")
	}
	c.Disarm()
	if got := readArmed(t, c, 5); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}

	// Bytes buffered while disarmed: read one byte of the echo with
	// ReadWait, so that the rest stays in quic-go's stream buffer.
	if _, err := c.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if n, err := c.ReadWait(one, time.Now().Add(guard)); n != 1 || err != nil {
		t.Fatalf("ReadWait: %d, %v", n, err)
	}
	rd, err = c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.ReadNow(buf)
	if err != nil {
		t.Fatalf("ReadNow after Arm: %v", err)
	}
	if n == 0 {
		// quic-go woke ReadWait when it put the frame into the stream,
		// before it recorded the packet (the tracer's event follows the
		// frames' handling): the accounting lags behind the read. The
		// event is still to come, finds the connection armed, and
		// signals.
		select {
		case <-rd.Signal:
		case <-time.After(guard):
			t.Fatal("bytes stranded: ReadNow after Arm found nothing and no signal came")
		}
		n, err = c.ReadNow(buf)
	}
	if err != nil || string(buf[:n]) != "orld" {
		t.Fatalf("ReadNow after Arm: %q, %v", buf[:n], err)
	}
	c.Disarm()
	// Nothing left: ReadNow returns at once with nothing.
	if n, err := c.ReadNow(buf); n != 0 || err != nil {
		t.Fatalf("ReadNow when drained: %d, %v", n, err)
	}
}

// TestQUICReadyLagging is the race TestQUICReadiness meets now and then,
// made deterministic: quic-go puts a STREAM frame into the stream and
// wakes a parked read before its tracer records the packet, so the loop
// may have read bytes (readPos) beyond what the accounting counts (end)
// when it arms. Arm then queues no signal, and ReadNow reads nothing; the
// packet's event, recorded afterwards, must signal and make the rest of
// the frame readable.
func TestQUICReadyLagging(t *testing.T) {
	r := newQUICReady()
	const readPos = 1 // one byte of a five-byte frame already read
	if r.readable(0, readPos) {
		t.Fatal("readable before any event")
	}
	r.arm([]int64{readPos}, false)
	select {
	case <-r.sig:
		t.Fatal("Arm signalled though the accounting shows nothing unread")
	default:
	}
	r.RecordEvent(qlog.PacketReceived{Frames: []qlog.Frame{{Frame: &qlog.StreamFrame{StreamID: 0, Offset: 0, Length: 5}}}})
	select {
	case <-r.sig:
	default:
		t.Fatal("the lagging event did not signal the armed connection")
	}
	if !r.readable(0, readPos) {
		t.Fatal("the rest of the frame is not readable after the event")
	}
	if r.readable(0, 5) {
		t.Fatal("readable after everything was read")
	}
}

func TestQUICReadWaitDeadline(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	c := dialTestQUIC(t, s.url, DialOptions{})
	_, err := c.ReadWait(make([]byte, 8), time.Now().Add(time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadWait: %v", err)
	}
}

func TestQUICCloseUnblocksReadWait(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{})
	c := dialTestQUIC(t, s.url, DialOptions{})
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := c.ReadWait(make([]byte, 8), time.Time{})
		done <- err
	}()
	<-started
	// Close from this goroutine, whether or not the reader is already
	// parked: either way its ReadWait must end with a closed error.
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadWait after Close: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("ReadWait still blocked after Close")
	}
}

func TestQUICOverloaded(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{handle: func(_ *quicTestServer, conn *quic.Conn, st *quic.Stream) {
		var b [1]byte
		_, _ = st.Read(b[:])
		_ = conn.CloseWithError(QUICCodeOverloaded, "overloaded")
	}})
	c := dialTestQUIC(t, s.url, DialOptions{})
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReadWait(make([]byte, 8), time.Now().Add(guard))
	if !errors.Is(err, ErrQUICOverloaded) {
		t.Fatalf("error %v is not ErrQUICOverloaded", err)
	}
	var app *quic.ApplicationError
	if !errors.As(err, &app) || app.ErrorCode != QUICCodeOverloaded {
		t.Fatalf("quic-go's error not wrapped: %v", err)
	}
}

func TestQUICErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&quic.ApplicationError{Remote: true, ErrorCode: 0}, ErrQUICClosedByPeer},
		{&quic.ApplicationError{Remote: true, ErrorCode: 1}, ErrQUICControlStreamDown},
		{&quic.ApplicationError{Remote: true, ErrorCode: 2}, ErrQUICOverloaded},
		{&quic.ApplicationError{Remote: true, ErrorCode: 7}, ErrQUICApplicationError},
		{&quic.ApplicationError{Remote: false}, net.ErrClosed},
		{&quic.IdleTimeoutError{}, ErrQUICIdleTimeout},
		{&quic.HandshakeTimeoutError{}, ErrQUICHandshakeTimeout},
		{&quic.StatelessResetError{}, ErrQUICStatelessReset},
		{&quic.TransportError{Remote: true, ErrorCode: 0x178}, ErrQUICALPN},
		{&quic.StreamError{Remote: true, ErrorCode: 5}, ErrQUICControlStreamDown},
		{&quic.StreamError{Remote: false}, net.ErrClosed},
	} {
		if got := quicError(tc.err); !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
			t.Errorf("quicError(%v) = %v, want %v wrapping the original", tc.err, got, tc.want)
		}
	}
}

// TestQUICIdleTimeout: a server that stops answering. quic-go accepts no
// peer idle timeout below 5 s (protocol.MinRemoteIdleTimeout), so the
// client gives up after about that long.
func TestQUICIdleTimeout(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{maxIdle: 200 * time.Millisecond, droppable: true, handle: func(s *quicTestServer, _ *quic.Conn, st *quic.Stream) {
		var b [1]byte
		_, _ = st.Read(b[:])
		_, _ = st.Write(b[:])
		_, _ = st.Read(b[:])
		s.pc.drop.Store(true) // from now on the server answers nothing
	}})
	c := dialTestQUIC(t, s.url, DialOptions{})
	// One round trip first, so that the handshake is confirmed and the
	// negotiated idle timeout (not the handshake's) applies.
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	readArmed(t, c, 1)
	if _, err := c.Write([]byte{2}); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReadWait(make([]byte, 8), time.Now().Add(guard))
	if !errors.Is(err, ErrQUICIdleTimeout) {
		t.Fatalf("error %v is not ErrQUICIdleTimeout", err)
	}
}

func TestQUICHandshakeTimeout(t *testing.T) {
	// A UDP socket that never answers: UDP "blocked".
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	_, err = Dial(ctx, "quic://"+udp.LocalAddr().String(), DialOptions{
		TLS:  testcerts.Get().ClientConfig(),
		QUIC: QUICOptions{HandshakeTimeout: 100 * time.Millisecond},
	})
	if !errors.Is(err, ErrQUICHandshakeTimeout) {
		t.Fatalf("error %v is not ErrQUICHandshakeTimeout", err)
	}
}

// ticketCache is a client session cache that reports each ticket stored.
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func newTicketCache() *ticketCache {
	return &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 16)}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// firstConnection connects once to obtain a session ticket in cache.
func firstConnection(t *testing.T, url string, cache *ticketCache) {
	t.Helper()
	tlsConf := testcerts.Get().ClientConfig()
	tlsConf.ClientSessionCache = cache
	c := dialTestQUIC(t, url, DialOptions{TLS: tlsConf, QUIC: QUICOptions{Enable0RTT: true}})
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if got := readArmed(t, c, 5); string(got) != "first" {
		t.Fatalf("got %q", got)
	}
	select {
	case <-cache.put:
	case <-time.After(guard):
		t.Fatal("no session ticket")
	}
	if c.Used0RTT() {
		t.Fatal("first connection used 0-RTT")
	}
	c.Close()
}

func TestQUIC0RTTAccepted(t *testing.T) {
	s := startQUICServer(t, quicServerOptions{allow0RTT: true})
	cache := newTicketCache()
	firstConnection(t, s.url, cache)

	tlsConf := testcerts.Get().ClientConfig()
	tlsConf.ClientSessionCache = cache
	c := dialTestQUIC(t, s.url, DialOptions{TLS: tlsConf, QUIC: QUICOptions{Enable0RTT: true}})
	if c.handshakeDone() {
		t.Log("handshake already complete after DialEarly")
	}
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if got := readArmed(t, c, 5); string(got) != "early" {
		t.Fatalf("got %q", got)
	}
	if !c.Used0RTT() {
		t.Fatal("Used0RTT false with a server that allows 0-RTT")
	}
	if c.rejected {
		t.Fatal("0-RTT rejected")
	}
	c.Close()
	s.ln.Close()
	s.wg.Wait()
	if r := s.received(); len(r) != 2 || string(r[1]) != "early" {
		t.Fatalf("server received %q", r)
	}
}

func TestQUIC0RTTRejected(t *testing.T) {
	// The ticket comes from a server that allows 0-RTT; the second server
	// (same host name, so the same cache entry) cannot use it and rejects
	// 0-RTT.
	first := startQUICServer(t, quicServerOptions{allow0RTT: true})
	cache := newTicketCache()
	firstConnection(t, first.url, cache)

	s := startQUICServer(t, quicServerOptions{allow0RTT: false})
	tlsConf := testcerts.Get().ClientConfig()
	tlsConf.ClientSessionCache = cache
	c := dialTestQUIC(t, s.url, DialOptions{TLS: tlsConf, QUIC: QUICOptions{Enable0RTT: true}})
	if !c.early {
		t.Fatal("DialEarly with a ticket waited for the handshake")
	}
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	if got := readArmed(t, c, 5); string(got) != "early" {
		t.Fatalf("got %q", got)
	}
	if c.Used0RTT() {
		t.Fatal("Used0RTT true though the server rejected 0-RTT")
	}
	if !c.rejected {
		t.Fatal("0-RTT was not attempted and rejected")
	}
	c.Close()
	s.ln.Close()
	s.wg.Wait()
	if r := s.received(); len(r) != 1 || string(r[0]) != "early" {
		t.Fatalf("server received %q, want the data exactly once", r)
	}
}

// BenchmarkQUICReadNowEmpty measures ReadNow when nothing has arrived,
// the common case of a loop that polls before it waits: with the
// tracer's accounting it does not touch the stream; the alternative, a
// stream read with a deadline a few microseconds ahead, parks on a timer
// each time.
func BenchmarkQUICReadNowEmpty(b *testing.B) {
	s := startQUICServer(b, quicServerOptions{})
	c := dialTestQUIC(b, s.url, DialOptions{})
	buf := make([]byte, 64)
	b.Run("accounting", func(b *testing.B) {
		for range b.N {
			if n, err := c.ReadNow(buf); n != 0 || err != nil {
				b.Fatal(n, err)
			}
		}
	})
	for _, slack := range []time.Duration{2 * time.Microsecond, 20 * time.Microsecond} {
		b.Run("deadline-"+slack.String(), func(b *testing.B) {
			for range b.N {
				_ = c.stream.SetReadDeadline(time.Now().Add(slack))
				if n, err := c.stream.Read(buf); n != 0 || !isDeadline(err) {
					b.Fatal(n, err)
				}
			}
		})
	}
}
