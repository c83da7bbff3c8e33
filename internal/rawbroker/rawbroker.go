package rawbroker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// DefaultTimeout is the read deadline of a Peer's reads unless changed with
// SetTimeout. It is a failure guard: reads of data that is expected to come
// return as soon as it arrives.
const DefaultTimeout = 30 * time.Second

// Server accepts connections on a free port of 127.0.0.1.
type Server struct {
	ln *net.TCPListener

	mu     sync.Mutex
	peers  []*Peer
	closed bool
}

// Listen starts a server on a free loopback port; t.Cleanup closes it and
// every accepted connection.
func Listen(t testing.TB) *Server {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("rawbroker: listen: %v", err)
	}
	s := &Server{ln: ln}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the server's address as "mqtt://127.0.0.1:PORT".
func (s *Server) URL() string { return "mqtt://" + s.Addr() }

// Accept waits for the next connection until ctx ends. It must not be
// called concurrently with itself.
func (s *Server) Accept(ctx context.Context) (*Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Unblock Accept when ctx ends by moving the listener's deadline to now.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = s.ln.SetDeadline(time.Now())
	})
	conn, err := s.ln.AcceptTCP()
	if !stop() {
		<-fired // the deadline was moved: wait, then clear it
	}
	_ = s.ln.SetDeadline(time.Time{})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rawbroker: accept: %w", ctx.Err())
		}
		return nil, fmt.Errorf("rawbroker: accept: %w", err)
	}
	p := &Peer{conn: conn, r: bufio.NewReader(conn), timeout: DefaultTimeout}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	s.peers = append(s.peers, p)
	return p, nil
}

// Close stops listening and closes every accepted connection.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	peers := s.peers
	s.peers = nil
	s.mu.Unlock()
	err := s.ln.Close()
	for _, p := range peers {
		_ = p.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Peer is one accepted client connection. Its methods are meant to be used
// from one goroutine, except Close.
type Peer struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// Conn returns the underlying connection. Read from it only through the
// Peer's methods, which buffer.
func (p *Peer) Conn() net.Conn { return p.conn }

// SetTimeout sets the read deadline applied to each later read (DefaultTimeout
// to start with).
func (p *Peer) SetTimeout(d time.Duration) { p.timeout = d }

// arm sets the read deadline for one read.
func (p *Peer) arm() {
	_ = p.conn.SetReadDeadline(time.Now().Add(p.timeout))
}

// ReadPacket reads and decodes one MQTT 5 packet from the client.
func (p *Peer) ReadPacket() (*packets.ControlPacket, error) {
	p.arm()
	cp, err := packets.ReadPacket(p.r)
	if err != nil {
		return nil, fmt.Errorf("rawbroker: read packet: %w", err)
	}
	return cp, nil
}

// ReadRawPacket reads one packet without decoding it: the first byte of the
// fixed header (type and flags) and the bytes after the remaining length.
// It works for every protocol version.
func (p *Peer) ReadRawPacket() (header byte, body []byte, err error) {
	p.arm()
	header, err = p.r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("rawbroker: read header: %w", err)
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return header, nil, errors.New("rawbroker: remaining length longer than 4 bytes")
		}
		b, err := p.r.ReadByte()
		if err != nil {
			return header, nil, fmt.Errorf("rawbroker: read remaining length: %w", err)
		}
		n += int(b&0x7f) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return header, nil, fmt.Errorf("rawbroker: read body: %w", err)
	}
	return header, body, nil
}

// ExpectConnect reads one packet and returns it if it is an MQTT 5 CONNECT.
func (p *Peer) ExpectConnect() (*packets.Connect, error) {
	cp, err := p.ReadPacket()
	if err != nil {
		return nil, err
	}
	c, ok := cp.Content.(*packets.Connect)
	if !ok {
		return nil, fmt.Errorf("rawbroker: want CONNECT, got %s", cp.PacketType())
	}
	return c, nil
}

// ExpectClosed reads until the client closes the connection. It returns nil
// on end of file or connection reset, and an error when bytes arrive
// instead or the read deadline passes.
func (p *Peer) ExpectClosed() error {
	p.arm()
	var buf [256]byte
	n, err := p.r.Read(buf[:])
	switch {
	case n > 0:
		return fmt.Errorf("rawbroker: want connection closed, got % x", buf[:n])
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("rawbroker: connection still open after %v", p.timeout)
	}
	return fmt.Errorf("rawbroker: want connection closed: %w", err)
}

// Write writes raw bytes to the client.
func (p *Peer) Write(raw []byte) error {
	if _, err := p.conn.Write(raw); err != nil {
		return fmt.Errorf("rawbroker: write: %w", err)
	}
	return nil
}

// WritePacket encodes and writes one packet, such as &packets.Puback{...}
// or a *packets.ControlPacket.
func (p *Peer) WritePacket(pk packets.Packet) error {
	if _, err := pk.WriteTo(p.conn); err != nil {
		return fmt.Errorf("rawbroker: write packet: %w", err)
	}
	return nil
}

// SendConnack writes an MQTT 5 CONNACK. props may be nil.
func (p *Peer) SendConnack(sessionPresent bool, reason byte, props *packets.Properties) error {
	return p.WritePacket(&packets.Connack{SessionPresent: sessionPresent, ReasonCode: reason, Properties: props})
}

// SendConnack311 writes an MQTT 3.1.1 CONNACK with the given return code.
func (p *Peer) SendConnack311(sessionPresent bool, returnCode byte) error {
	var flags byte
	if sessionPresent {
		flags = 1
	}
	return p.Write([]byte{0x20, 0x02, flags, returnCode})
}

// Close closes the connection.
func (p *Peer) Close() error {
	err := p.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
