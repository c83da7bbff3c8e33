package netio

import (
	"errors"
	"net"
	"os"
	"time"
)

// streamConn presents a Conn as a net.Conn, for libraries that read and
// write a net.Conn: crypto/tls on top of a socket, the WebSocket handshake
// and framing on top of TCP or TLS. It starts no goroutine.
//
// Reads come in two modes, chosen by the layer above before it calls into
// the library:
//   - nonblocking: a read takes only what has arrived; when nothing has,
//     it returns errWouldBlock, a temporary timeout error. crypto/tls keeps
//     its state after temporary errors and resumes on the next read.
//   - blocking (the default): a read parks in the runtime's poller until
//     bytes arrive or the read deadline passes.
type streamConn struct {
	c            Conn
	nonblocking  bool
	readDeadline time.Time
}

// errWouldBlock is what a nonblocking streamConn read returns when no
// byte has arrived. It satisfies errors.Is(err, os.ErrDeadlineExceeded)
// and is a net.Error whose Timeout and Temporary are true.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "netio: no data available yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }
func (wouldBlock) Is(target error) bool {
	return target == os.ErrDeadlineExceeded
}

// isWouldBlock reports whether err says that a nonblocking read found
// nothing.
func isWouldBlock(err error) bool { return errors.Is(err, errWouldBlock) }

func (s *streamConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.nonblocking {
		n, err := s.c.ReadNow(p)
		if n == 0 && err == nil {
			return 0, errWouldBlock
		}
		return n, err
	}
	for {
		n, err := s.c.ReadWait(p, s.readDeadline)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (s *streamConn) Write(p []byte) (int, error) { return s.c.Write(p) }
func (s *streamConn) Close() error                { return s.c.Close() }

// LocalAddr and RemoteAddr are placeholders: Conn does not expose
// addresses, and neither crypto/tls nor the WebSocket code needs them.
func (s *streamConn) LocalAddr() net.Addr  { return streamAddr{} }
func (s *streamConn) RemoteAddr() net.Addr { return streamAddr{} }

func (s *streamConn) SetDeadline(t time.Time) error {
	s.readDeadline = t
	return s.c.SetWriteDeadline(t)
}

func (s *streamConn) SetReadDeadline(t time.Time) error {
	s.readDeadline = t
	return nil
}

func (s *streamConn) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }

type streamAddr struct{}

func (streamAddr) Network() string { return "netio" }
func (streamAddr) String() string  { return "netio-stream" }
