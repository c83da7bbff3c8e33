package netio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// QUICALPN is the ALPN protocol of MQTT over QUIC. quic:// always offers
// it, whatever the TLS configuration says, and refuses a server that
// selects another.
const QUICALPN = "mqtt"

// Application error codes of MQTT over QUIC (EMQX), carried by the QUIC
// CONNECTION_CLOSE a broker sends.
const (
	QUICCodeNormal            = 0 // the connection ended normally
	QUICCodeControlStreamDown = 1 // the control stream failed
	QUICCodeOverloaded        = 2 // the broker is overloaded
)

// Errors of quic:// connections. The QUIC library's own error is wrapped
// too, so errors.As still finds it.
var (
	// ErrQUICHandshakeTimeout: no QUIC handshake within
	// QUICOptions.HandshakeTimeout, typically because UDP is blocked on
	// the way to the server. The next server should be tried.
	ErrQUICHandshakeTimeout = errors.New("netio: QUIC handshake timed out (UDP blocked or server down?)")
	// ErrQUICIdleTimeout: nothing arrived from the server within the QUIC
	// idle timeout; the connection is gone.
	ErrQUICIdleTimeout = errors.New("netio: QUIC idle timeout")
	// ErrQUICStatelessReset: the server no longer knows the connection
	// (it restarted, or the connection moved) and said so with a
	// stateless reset.
	ErrQUICStatelessReset = errors.New("netio: QUIC stateless reset by the server")
	// ErrQUICALPN: the server does not speak MQTT over QUIC (ALPN "mqtt"
	// was refused or not selected).
	ErrQUICALPN = errors.New(`netio: QUIC server refused ALPN "mqtt"`)
	// ErrQUICClosedByPeer: the broker closed the QUIC connection with
	// application error code 0 (normal close).
	ErrQUICClosedByPeer = errors.New("netio: QUIC connection closed by the broker")
	// ErrQUICControlStreamDown: the broker closed the QUIC connection with
	// application error code 1 (control stream down), or reset the
	// control stream.
	ErrQUICControlStreamDown = errors.New("netio: QUIC control stream down")
	// ErrQUICOverloaded: the broker closed the QUIC connection with
	// application error code 2 (overloaded).
	ErrQUICOverloaded = errors.New("netio: QUIC broker overloaded")
	// ErrQUICApplicationError: the broker closed the QUIC connection with
	// an application error code other than 0, 1 and 2.
	ErrQUICApplicationError = errors.New("netio: QUIC connection closed by the broker with an error")
)

// quicReadNowGuard is the read deadline ReadNow sets, from now, when the
// connection's receive accounting says bytes (or an error) are waiting. A
// read with data buffered returns at once and never arms a timer, so the
// guard only matters if the accounting were wrong: ReadNow then waits at
// most this long instead of forever.
const quicReadNowGuard = time.Millisecond

// quicCloseLinger bounds how long Close waits for the broker to end the
// control stream after our FIN, before closing the connection.
const quicCloseLinger = 250 * time.Millisecond

// quicConn is the Conn of quic://: the control stream of a quic-go
// connection over a UDP socket of its own.
//
// Readiness comes from quic-go's qlog tracer (see quicReady): quic-go
// records a "packet received" event after it handled the packet's frames,
// on its own goroutine; the tracer counts the bytes that arrived on the
// control stream and, when the loop is armed, wakes it with a
// non-blocking send on a one-slot channel. ReadNow reads only when that
// accounting says bytes (or an error) are waiting, so it never waits for
// a deadline to pass; quic-go offers no other way to learn that a stream
// has data buffered (a read with a deadline in the past returns nothing
// even then).
type quicConn struct {
	udp   *net.UDPConn
	tr    *quic.Transport
	conn  *quic.Conn
	ready *quicReady

	// Migration (quic_migrate.go): the sockets of the paths the
	// connection moved to (kept until Close: quic-go cannot release
	// them earlier), and the migration under way.
	pathsMu sync.Mutex // guards paths against Close from another goroutine
	paths   []quicSocket
	mig     *quicMigration
	local   net.Addr // the local address in use after a migration
	// posBuf holds the read positions Arm hands to the accounting.
	posBuf []int64
	// data are the data streams (quic_streams.go), by number.
	data [MaxQUICStreams]*quicDataStream

	// Loop goroutine only.
	stream        *quic.Stream
	readPos       int64       // bytes read from the control stream
	writeDeadline time.Time   // as last set, reapplied to a new stream
	stop          func() bool // see SetWriteInterrupt
	hsTimeout     time.Duration

	// 0-RTT: early is set while the handshake of a DialEarly connection
	// may still reject what was written; earlyBuf holds a copy of every
	// byte written before the handshake completed, to resend then.
	early    bool
	earlyBuf []byte
	rejected bool // the server rejected 0-RTT and the data was resent

	// busy counts loop calls in progress, so that Close from another
	// goroutine does not touch the stream concurrently (quic-go forbids
	// Close concurrent with Write, and reads are serialized).
	busy      atomic.Int32
	closed    atomic.Bool
	torn      atomic.Bool // a write was interrupted: part of a packet went out
	closeOnce sync.Once
	closeErr  error
}

var (
	_ EarlyDataReporter = (*quicConn)(nil)
	_ WriteInterrupter  = (*quicConn)(nil)
)

// errQUICClosed is returned by operations after Close.
var errQUICClosed = fmt.Errorf("netio: QUIC connection closed: %w", net.ErrClosed)

// enter marks a loop call in progress; it fails after Close.
func (q *quicConn) enter() error {
	q.busy.Add(1)
	if q.closed.Load() {
		q.busy.Add(-1)
		return errQUICClosed
	}
	return nil
}

func (q *quicConn) leave() { q.busy.Add(-1) }

func (q *quicConn) handshakeDone() bool {
	select {
	case <-q.conn.HandshakeComplete():
		return true
	default:
		return false
	}
}

// checkALPN fails unless the server selected "mqtt".
func (q *quicConn) checkALPN() error {
	if p := q.conn.ConnectionState().TLS.NegotiatedProtocol; p != QUICALPN {
		return fmt.Errorf("%w (server selected %q)", ErrQUICALPN, p)
	}
	return nil
}

// ReadNow implements Conn.
func (q *quicConn) ReadNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	if q.early {
		if !q.handshakeDone() {
			if !q.ready.readable(0, q.readPos) {
				return 0, nil
			}
		} else if err := q.settleEarly(); err != nil {
			return 0, err
		}
	}
	if !q.ready.readable(0, q.readPos) {
		return 0, nil
	}
	n, err := q.read(p, time.Now().Add(quicReadNowGuard))
	if err != nil && isDeadline(err) {
		return n, nil
	}
	return n, err
}

// ReadWait implements Conn.
func (q *quicConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	n, err := q.read(p, deadline)
	if err != nil && isDeadline(err) {
		if n > 0 {
			return n, nil
		}
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// read reads from the control stream with a deadline, resending the
// 0-RTT data once if the server rejected it.
func (q *quicConn) read(p []byte, deadline time.Time) (int, error) {
	for {
		if err := q.stream.SetReadDeadline(deadline); err != nil {
			return 0, quicError(err)
		}
		n, err := q.stream.Read(p)
		q.readPos += int64(n)
		switch {
		case err == nil:
			return n, nil
		case n == 0 && q.early && errors.Is(err, quic.Err0RTTRejected):
			if err := q.settleEarly(); err != nil {
				return 0, err
			}
			continue
		case errors.Is(err, io.EOF) || isDeadline(err):
			return n, err
		}
		return n, q.mapError(err)
	}
}

// settleEarly runs once the handshake of a 0-RTT connection is complete
// (it waits for it, at most the handshake timeout): if the server
// rejected the 0-RTT data, it opens the control stream again and resends
// every byte written before the handshake completed.
func (q *quicConn) settleEarly() error {
	if !q.early {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.hsTimeout)
	defer cancel()
	select {
	case <-q.conn.HandshakeComplete():
	case <-q.conn.Context().Done():
		return fmt.Errorf("QUIC handshake: %w", quicError(context.Cause(q.conn.Context())))
	case <-ctx.Done():
		return fmt.Errorf("QUIC handshake: %w", ErrQUICHandshakeTimeout)
	}
	q.early = false
	_ = reportICMP(q.udp, false) // see dialQUIC
	buf := q.earlyBuf
	q.earlyBuf = nil
	if err := q.checkALPN(); err != nil {
		return err
	}
	if !errors.Is(context.Cause(q.stream.Context()), quic.Err0RTTRejected) {
		return nil // accepted, or nothing was sent as 0-RTT data
	}
	next, err := q.conn.NextConnection(ctx)
	if err != nil {
		return fmt.Errorf("QUIC after 0-RTT rejection: %w", quicError(err))
	}
	q.conn = next
	q.rejected = true
	q.ready.reset()
	q.readPos = 0
	if q.stream, err = q.conn.OpenStream(); err != nil {
		return fmt.Errorf("reopening the QUIC control stream after 0-RTT rejection: %w", quicError(err))
	}
	if err := q.stream.SetWriteDeadline(q.writeDeadline); err != nil {
		return quicError(err)
	}
	if _, err := q.stream.Write(buf); err != nil {
		return fmt.Errorf("resending after 0-RTT rejection: %w", quicError(err))
	}
	return nil
}

// Arm implements Conn: the tracer signals Readiness.Signal while armed.
// When the accounting already shows something to read, the signal is
// queued at once.
func (q *quicConn) Arm() (Readiness, error) {
	if q.closed.Load() {
		return Readiness{}, errQUICClosed
	}
	q.ready.arm(q.positions(), q.early)
	return Readiness{Signal: q.ready.sig}, nil
}

// Disarm implements Conn.
func (q *quicConn) Disarm() { q.ready.armed.Store(false) }

// Write implements Conn. Before the handshake of a 0-RTT connection
// completes, it keeps a copy of what it writes, to resend if the server
// rejects the 0-RTT data.
func (q *quicConn) Write(p []byte) (int, error) {
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	buffered := false
	if q.early && !q.handshakeDone() {
		q.earlyBuf = append(q.earlyBuf, p...)
		buffered = true
	} else if len(p) > 0 {
		// Queue without waiting for the congestion window: quic-go's
		// Write returns only once the data left in packets, so on a path
		// that stopped answering (congestion window full of lost packets)
		// it would hold the loop until a probe timeout sends some, and
		// the loop could neither notice the stall nor migrate.
		// TryWriteAll is bounded by flow control, the peer's receive
		// window; only when that is exhausted (the peer is not reading)
		// does the write block, as a TCP write does on a full buffer.
		switch err := q.stream.TryWriteAll(p); {
		case err == nil:
			return len(p), nil
		case !errors.Is(err, quic.ErrWouldBlock):
			return 0, q.mapError(err)
		}
	}
	n, err := q.blockingWrite(p)
	if err == nil {
		return n, nil
	}
	if q.early && errors.Is(err, quic.Err0RTTRejected) {
		if err := q.settleEarly(); err != nil {
			return 0, err
		}
		if buffered {
			return len(p), nil // resent by settleEarly
		}
		if _, err := q.blockingWrite(p); err != nil {
			if errors.Is(err, ErrWriteInterrupted) {
				return 0, err
			}
			return 0, quicError(err)
		}
		return len(p), nil
	}
	if isDeadline(err) || errors.Is(err, ErrWriteInterrupted) {
		return n, err
	}
	return n, q.mapError(err)
}

// blockingWrite writes p to the control stream, waiting for flow control
// credit until the write deadline; with a stop function installed
// (SetWriteInterrupt) it waits in slices and asks it between them.
// quic-go's Stream.Write returns what it took when its deadline passes
// and the stream stays usable, so the write goes on with the rest.
func (q *quicConn) blockingWrite(p []byte) (int, error) {
	if q.stop == nil {
		return q.stream.Write(p)
	}
	n, err := slicedWrite(q.stream, p, q.writeDeadline, q.stop)
	if errors.Is(err, ErrWriteInterrupted) {
		q.torn.Store(true)
	}
	return n, err
}

// isDeadline reports whether err is a read or write deadline passing
// (quic-go's idle and handshake timeouts are net.Errors with Timeout()
// true too, but they end the connection).
func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// mapError is quicError, except that after Close every error says the
// connection was closed.
func (q *quicConn) mapError(err error) error {
	if q.closed.Load() {
		return fmt.Errorf("%w: %w", errQUICClosed, err)
	}
	return quicError(err)
}

// SetWriteDeadline implements Conn.
func (q *quicConn) SetWriteDeadline(t time.Time) error {
	q.writeDeadline = t
	if q.stop != nil {
		return nil // blockingWrite sets its slices' deadlines
	}
	return q.stream.SetWriteDeadline(t)
}

// SetWriteInterrupt implements WriteInterrupter for the control stream.
// A write waits for the broker only when the stream's flow control window
// is exhausted (the broker stopped reading); it then asks stop every
// WriteSlice. Data streams never block (WriteNow).
func (q *quicConn) SetWriteInterrupt(stop func() bool) {
	q.stop = stop
	if stop == nil {
		_ = q.stream.SetWriteDeadline(q.writeDeadline)
	}
}

// Transport implements Conn: "quic".
func (q *quicConn) Transport() string { return "quic" }

// Used0RTT implements EarlyDataReporter: whether the server accepted the
// 0-RTT data (false until the handshake completed).
func (q *quicConn) Used0RTT() bool {
	return q.handshakeDone() && q.conn.ConnectionState().Used0RTT
}

// Close implements Conn. From the loop's goroutine, with the connection
// healthy, it closes gracefully: it ends the control stream (FIN, after
// the DISCONNECT the loop wrote), waits briefly (quicCloseLinger) for the
// broker to end its side, then closes the connection with application
// error code 0. From another goroutine while the loop is inside a call,
// it closes the connection at once, which makes that call return. Either
// way the UDP socket is closed and quic-go's goroutines of this
// connection end. Later calls return the first result.
func (q *quicConn) Close() error { return q.close(true) }

// Abort implements Aborter: Close without waiting for the broker.
func (q *quicConn) Abort() error { return q.close(false) }

func (q *quicConn) close(graceful bool) error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		// After an interrupted write the stream ends in the middle of a
		// packet and the broker is not reading: no point in lingering.
		if graceful && q.busy.Load() == 0 && !q.torn.Load() {
			q.linger()
		}
		if q.stream != nil {
			q.stream.CancelRead(0)
		}
		err := q.conn.CloseWithError(QUICCodeNormal, "")
		q.ready.armed.Store(false)
		if rerr := q.releaseSocket(); err == nil {
			err = rerr
		}
		q.closeErr = err
	})
	return q.closeErr
}

// linger sends FIN on a healthy control stream and reads until the
// broker's FIN, an error or quicCloseLinger.
func (q *quicConn) linger() {
	if q.stream == nil || q.conn.Context().Err() != nil || context.Cause(q.stream.Context()) != nil {
		return
	}
	if err := q.stream.Close(); err != nil {
		return
	}
	if err := q.stream.SetReadDeadline(time.Now().Add(quicCloseLinger)); err != nil {
		return
	}
	var buf [512]byte
	for {
		if _, err := q.stream.Read(buf[:]); err != nil {
			return
		}
	}
}

// abort closes a connection that failed during the dial.
func (q *quicConn) abort() {
	_ = q.conn.CloseWithError(QUICCodeNormal, "")
	_ = q.releaseSocket()
}

// releaseSocket closes the transports (waiting for their receive
// goroutines) and the UDP sockets.
func (q *quicConn) releaseSocket() error {
	err := q.tr.Close()
	if cerr := q.udp.Close(); err == nil {
		err = cerr
	}
	q.pathsMu.Lock()
	paths := q.paths
	q.paths = nil
	q.pathsMu.Unlock()
	for _, s := range paths {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// positions returns the read positions of the streams the loop reads, for
// the receive accounting: the control stream's, then each data stream's
// (-1 for a slot not open).
func (q *quicConn) positions() []int64 {
	q.posBuf = append(q.posBuf[:0], q.readPos)
	for _, d := range q.data {
		if d == nil {
			continue
		}
		for len(q.posBuf) <= d.slot {
			q.posBuf = append(q.posBuf, -1)
		}
		q.posBuf[d.slot] = d.readPos
	}
	return q.posBuf
}

// quicError maps quic-go's errors to the netio sentinels, keeping the
// original wrapped. Errors it does not know are returned as they are.
func quicError(err error) error {
	if err == nil {
		return nil
	}
	var (
		idle *quic.IdleTimeoutError
		hs   *quic.HandshakeTimeoutError
		sr   *quic.StatelessResetError
		app  *quic.ApplicationError
		te   *quic.TransportError
		se   *quic.StreamError
	)
	switch {
	case errors.As(err, &hs):
		return fmt.Errorf("%w: %w", ErrQUICHandshakeTimeout, err)
	case errors.As(err, &idle):
		return fmt.Errorf("%w: %w", ErrQUICIdleTimeout, err)
	case errors.As(err, &sr):
		return fmt.Errorf("%w: %w", ErrQUICStatelessReset, err)
	case errors.As(err, &app):
		if !app.Remote {
			return fmt.Errorf("%w: %w", errQUICClosed, err)
		}
		switch app.ErrorCode {
		case QUICCodeNormal:
			return fmt.Errorf("%w: %w", ErrQUICClosedByPeer, err)
		case QUICCodeControlStreamDown:
			return fmt.Errorf("%w: %w", ErrQUICControlStreamDown, err)
		case QUICCodeOverloaded:
			return fmt.Errorf("%w: %w", ErrQUICOverloaded, err)
		}
		return fmt.Errorf("%w (code %d): %w", ErrQUICApplicationError, app.ErrorCode, err)
	case errors.As(err, &te):
		// CRYPTO_ERROR (0x100 + a TLS alert) ends a failed handshake.
		switch {
		case te.ErrorCode == 0x100+quic.TransportErrorCode(alertNoApplicationProtocol):
			return fmt.Errorf("%w: %w", ErrQUICALPN, err)
		case te.Remote && te.ErrorCode == 0x100+quic.TransportErrorCode(alertCertificateRequired):
			return fmt.Errorf("%w: %w: %w", ErrTLSHandshake, ErrClientCertificateRequired, err)
		case te.ErrorCode >= 0x100 && te.ErrorCode <= 0x1ff:
			return fmt.Errorf("%w: %w", ErrTLSHandshake, err)
		}
	case errors.As(err, &se):
		if se.Remote {
			return fmt.Errorf("%w (stream reset, code %d): %w", ErrQUICControlStreamDown, se.ErrorCode, err)
		}
		return fmt.Errorf("%w: %w", errQUICClosed, err)
	}
	return err
}
