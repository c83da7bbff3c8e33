package netio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"sync/atomic"
	"time"
)

// TLS errors. Every failure of the TLS handshake wraps ErrTLSHandshake,
// together with crypto/tls's own error, so that both
//
//	errors.Is(err, netio.ErrTLSHandshake)
//
// and the precise cause can be tested:
//
//	var unknown x509.UnknownAuthorityError   // server certificate from an unknown CA
//	var host x509.HostnameError              // certificate for another host name
//	var invalid x509.CertificateInvalidError // e.g. Reason x509.Expired
//	var alert tls.AlertError                 // an alert the server sent
//	errors.As(err, &unknown) ...
var (
	// ErrTLSHandshake wraps every TLS handshake failure: the server's
	// certificate not verified, an alert from the server (also one that
	// arrives on the first read after a TLS 1.3 handshake, when the server
	// rejects the client's certificate or its absence), the handshake
	// timing out or being cancelled.
	ErrTLSHandshake = errors.New("netio: TLS handshake failed")

	// ErrClientCertificateRequired: the server requires a client
	// certificate and the client sent none. With TLS 1.3 the server says
	// so only after the client finished its handshake, so the error comes
	// from the first read (while waiting for CONNACK); with TLS 1.2 from
	// the handshake. It is wrapped together with ErrTLSHandshake and the
	// server's alert (tls.AlertError 116 "certificate required", or 42
	// "bad certificate" / 40 "handshake failure" when the server had asked
	// for a certificate that the client did not send).
	ErrClientCertificateRequired = errors.New("netio: the server requires a client certificate and none was sent")
)

// tlsCloseNotifyTimeout bounds how long Close may block sending the TLS
// close_notify alert (crypto/tls would allow 5 s). The alert is a courtesy:
// a peer that does not read gets the socket closed anyway.
const tlsCloseNotifyTimeout = 50 * time.Millisecond

// States of a tlsConn (tlsConn.state).
const (
	tlsIdle   int32 = iota // no method running
	tlsBusy                // the loop's goroutine is inside a method (or the handshake runs)
	tlsClosed              // Close was called
)

// errTLSClosed is returned by methods called after Close.
var errTLSClosed = fmt.Errorf("netio: tls: %w", net.ErrClosed)

// firedSignal is a Readiness.Signal that always fires: a closed channel.
var firedSignal = func() chan os.Signal {
	c := make(chan os.Signal)
	close(c)
	return c
}()

// dialTLS dials mqtts:// (and ssl://, tls://): TCP, then the TLS
// handshake over the socket's Conn.
func dialTLS(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	nc, err := dialNet(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return handshakeTLS(ctx, WrapConn(nc), tlsConfigFor(u, opts.TLS))
}

// handshakeTLS runs a TLS client handshake over inner and returns the TLS
// layer as a Conn (Transport "tls"). It works over any Conn: TCP for
// mqtts://, and the WebSocket transport calls it to build wss://
// (WebSocket over TLS over TCP).
//
// cfg must name the server (ServerName) or set InsecureSkipVerify;
// tlsConfigFor prepares it from the URL. handshakeTLS does not modify it.
//
// The handshake runs on the calling goroutine with blocking reads bounded
// by ctx's deadline; it does not use tls.Conn.HandshakeContext, whose
// interrupter goroutine runs for every handshake. Cancelling ctx closes
// inner through context.AfterFunc, which starts a goroutine only if ctx is
// actually cancelled during the handshake (as net.Dialer does for the TCP
// connect). Closing inner from another goroutine also ends the handshake.
//
// The returned Conn owns inner. On failure inner is closed and the error
// wraps ErrTLSHandshake (see there for the ways to tell causes apart).
func handshakeTLS(ctx context.Context, inner Conn, cfg *tls.Config) (Conn, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	t := &tlsConn{inner: inner}
	t.stream.c = inner
	if cfg.GetClientCertificate == nil && len(cfg.Certificates) == 0 {
		// Send no certificate, as crypto/tls would, but note that the
		// server asked: an alert after that means it requires one.
		cfg.GetClientCertificate = t.noClientCertificate
	}
	t.tc = tls.Client(&t.stream, cfg)

	if err := ctx.Err(); err != nil {
		_ = inner.Close()
		return nil, fmt.Errorf("%w: %w", ErrTLSHandshake, err)
	}
	deadline, _ := ctx.Deadline()
	t.stream.readDeadline = deadline
	if err := inner.SetWriteDeadline(deadline); err != nil {
		_ = inner.Close()
		return nil, fmt.Errorf("%w: %w", ErrTLSHandshake, err)
	}
	t.state.Store(tlsBusy)
	stop := context.AfterFunc(ctx, func() { _ = t.Close() })
	err := t.tc.Handshake()
	interrupted := !stop()
	t.state.CompareAndSwap(tlsBusy, tlsIdle)

	if err == nil && interrupted {
		err = ctx.Err()
	}
	if err != nil {
		_ = t.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrTLSHandshake, ctxErr)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: %w", ErrTLSHandshake, context.DeadlineExceeded)
		}
		return nil, t.handshakeError(err)
	}
	t.stream.readDeadline = time.Time{}
	if err := inner.SetWriteDeadline(time.Time{}); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("netio: tls: %w", err)
	}
	return t, nil
}

// tlsConn is the Conn of TLS over another Conn. crypto/tls reads the inner
// Conn through stream, a streamConn switched between its nonblocking mode
// (ReadNow) and its blocking mode (ReadWait, the handshake).
//
// Readiness: tls.Conn reads ahead. One socket read can bring several
// records (and one record can carry several MQTT packets), which then wait
// decrypted or raw inside tls.Conn while the socket is empty, so a socket
// readiness signal would never come for them. Two rules prevent the loop
// from waiting on a signal while such bytes are buffered:
//   - ReadNow keeps calling tls.Conn.Read until p is full or the inner
//     Conn has nothing (the temporary "would block" error). tls.Conn.Read
//     decodes buffered records before it touches the inner Conn, so when
//     it reaches the inner Conn and finds nothing, nothing is buffered but
//     an incomplete record, whose remaining bytes will signal.
//   - When ReadNow (or ReadWait) stopped because p was full, tls.Conn may
//     still hold plaintext: pending is set, and Arm returns a Readiness
//     that fires at once instead of arming the inner Conn.
//
// Concurrency: only Close may be called from another goroutine. state
// makes sure the inner Conn is never used by two goroutines at once
// (except its Close): Close sends close_notify only when no other method
// runs, otherwise it just closes the inner Conn, which ends a blocked read
// or write.
type tlsConn struct {
	inner  Conn
	stream tlsStream
	tc     *tls.Conn
	state  atomic.Int32

	pending       bool // tls.Conn may hold plaintext that was not returned
	gotData       bool // application data has been read
	certRequested bool // the server asked for a client certificate, none was sent
}

// tlsStream is the streamConn under tls.Conn. Once closing is set, write
// deadlines are capped so that close_notify cannot block for long.
type tlsStream struct {
	streamConn
	closeBy time.Time // set by Close before close_notify; zero otherwise
}

func (s *tlsStream) SetWriteDeadline(t time.Time) error {
	if !s.closeBy.IsZero() && (t.IsZero() || t.After(s.closeBy)) {
		t = s.closeBy
	}
	return s.c.SetWriteDeadline(t)
}

func (s *tlsStream) SetDeadline(t time.Time) error {
	s.readDeadline = t
	return s.SetWriteDeadline(t)
}

// noClientCertificate is the GetClientCertificate of configurations
// without client certificates.
func (t *tlsConn) noClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	t.certRequested = true
	return &tls.Certificate{}, nil
}

// enter marks the connection busy; it fails once Close was called.
func (t *tlsConn) enter() bool { return t.state.CompareAndSwap(tlsIdle, tlsBusy) }

// leave ends what enter began (nothing if Close ran meanwhile).
func (t *tlsConn) leave() { t.state.CompareAndSwap(tlsBusy, tlsIdle) }

// ReadNow implements Conn: it returns plaintext tls.Conn has buffered and
// decrypts what the inner Conn has, without blocking, until p is full or
// nothing is left but an incomplete record.
func (t *tlsConn) ReadNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !t.enter() {
		return 0, errTLSClosed
	}
	n, err := t.drain(p, 0)
	t.leave()
	return n, err
}

// ReadWait implements Conn: it returns buffered plaintext at once, or
// parks in the inner Conn's ReadWait until a record arrives or the
// deadline passes; then it takes whatever else is ready, as ReadNow.
func (t *tlsConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !t.enter() {
		return 0, errTLSClosed
	}
	t.stream.nonblocking = false
	t.stream.readDeadline = deadline
	n, err := t.tc.Read(p)
	if err != nil {
		t.leave()
		if n > 0 {
			t.gotData = true
			return n, nil // the error is sticky in tls.Conn: the next read returns it
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, os.ErrDeadlineExceeded
		}
		return 0, t.readError(err)
	}
	n, err = t.drain(p, n)
	t.leave()
	return n, err
}

// drain reads without blocking into p[n:] (see ReadNow).
func (t *tlsConn) drain(p []byte, n int) (int, error) {
	t.stream.nonblocking = true
	for n < len(p) {
		m, err := t.tc.Read(p[n:])
		n += m
		if m > 0 {
			t.gotData = true
		}
		if err != nil {
			t.pending = false
			if isWouldBlock(err) || n > 0 {
				// Nothing more now; or data and then an error, which
				// tls.Conn keeps and returns on the next read.
				return n, nil
			}
			return 0, t.readError(err)
		}
	}
	t.pending = true
	return n, nil
}

// readError maps a read error. An alert from the server before any
// application data is the server rejecting the handshake (TLS 1.3 servers
// verify the client's certificate after the client's handshake ended).
func (t *tlsConn) readError(err error) error {
	if a, ok := remoteAlert(err); ok && !t.gotData && a != alertCloseNotify {
		return t.handshakeError(err)
	}
	return err
}

// Alerts of RFC 8446 section 6 that handshakeError looks at.
const (
	alertCloseNotify           tls.AlertError = 0
	alertHandshakeFailure      tls.AlertError = 40
	alertBadCertificate        tls.AlertError = 42
	alertCertificateRequired   tls.AlertError = 116
	alertNoApplicationProtocol tls.AlertError = 120
)

// handshakeError wraps a handshake failure with ErrTLSHandshake and, when
// the server refused to go on without a client certificate, with
// ErrClientCertificateRequired. An alert from the server can be matched
// as a tls.AlertError.
func (t *tlsConn) handshakeError(err error) error {
	a, ok := remoteAlert(err)
	if !ok {
		return fmt.Errorf("%w: %w", ErrTLSHandshake, err)
	}
	err = &remoteAlertError{alert: a, err: err}
	if a == alertCertificateRequired || (t.certRequested && (a == alertBadCertificate || a == alertHandshakeFailure)) {
		return fmt.Errorf("%w: %w: %w", ErrTLSHandshake, ErrClientCertificateRequired, err)
	}
	return fmt.Errorf("%w: %w", ErrTLSHandshake, err)
}

// remoteAlert returns the alert in err if err is an alert the peer sent.
// crypto/tls reports those as a *net.OpError with Op "remote error" around
// a value of its unexported alert type (a uint8), not as tls.AlertError.
func remoteAlert(err error) (tls.AlertError, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	var ae tls.AlertError
	if errors.As(op.Err, &ae) {
		return ae, true
	}
	if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
		return tls.AlertError(v.Uint()), true
	}
	return 0, false
}

// remoteAlertError is an alert the server sent: its text is crypto/tls's
// ("remote error: tls: certificate required") and it matches both
// tls.AlertError and crypto/tls's original error.
type remoteAlertError struct {
	alert tls.AlertError
	err   error
}

func (e *remoteAlertError) Error() string   { return e.err.Error() }
func (e *remoteAlertError) Unwrap() []error { return []error{e.alert, e.err} }

// Arm implements Conn. It arms the inner Conn, unless tls.Conn may hold
// plaintext (see tlsConn): then the returned Readiness fires at once.
func (t *tlsConn) Arm() (Readiness, error) {
	if !t.enter() {
		return Readiness{}, errTLSClosed
	}
	defer t.leave()
	if t.pending {
		return Readiness{Signal: firedSignal}, nil
	}
	rd, err := t.inner.Arm()
	if err != nil {
		return Readiness{}, fmt.Errorf("netio: tls: %w", err)
	}
	return rd, nil
}

// Disarm implements Conn.
func (t *tlsConn) Disarm() {
	if !t.enter() {
		return
	}
	t.inner.Disarm()
	t.leave()
}

// Write implements Conn: it encrypts p into records and writes them to
// the inner Conn, blocking until done or until the write deadline.
func (t *tlsConn) Write(p []byte) (int, error) {
	if !t.enter() {
		return 0, errTLSClosed
	}
	n, err := t.tc.Write(p)
	if err != nil && !t.gotData && !errors.Is(err, os.ErrDeadlineExceeded) {
		err = t.rejection(err)
	}
	t.leave()
	return n, err
}

// rejection explains a write that failed before any data arrived. A
// server that rejects the client's certificate after a TLS 1.3 handshake
// sends an alert and closes; if the client's first write (CONNECT) reached
// it by then, its kernel answers with a reset, and the write fails with
// "connection reset by peer" although the alert already arrived: return
// the alert's error if one is waiting, else werr.
func (t *tlsConn) rejection(werr error) error {
	t.stream.nonblocking = true
	var scratch [64]byte
	_, err := t.tc.Read(scratch[:]) // the connection is broken: what it holds does not matter
	if _, ok := remoteAlert(err); ok {
		return t.readError(err)
	}
	return werr
}

// SetWriteDeadline implements Conn.
func (t *tlsConn) SetWriteDeadline(d time.Time) error {
	if !t.enter() {
		return errTLSClosed
	}
	err := t.inner.SetWriteDeadline(d)
	t.leave()
	return err
}

// SetWriteInterrupt implements WriteInterrupter when the inner Conn
// does: the records' writes are sliced there. An interrupted write
// breaks the TLS session, as any failed write does.
func (t *tlsConn) SetWriteInterrupt(stop func() bool) {
	if wi, ok := t.inner.(WriteInterrupter); ok {
		wi.SetWriteInterrupt(stop)
	}
}

// Transport implements Conn: "tls".
func (t *tlsConn) Transport() string { return "tls" }

// ConnectionState returns the TLS connection state (version, cipher
// suite, the server's certificates, whether the session was resumed).
func (t *tlsConn) ConnectionState() tls.ConnectionState { return t.tc.ConnectionState() }

// Close implements Conn. When no other method is running it sends the TLS
// close_notify alert, waiting at most tlsCloseNotifyTimeout; then it
// closes the inner Conn. Called while another goroutine is inside a method
// (a ReadWait, a Write, the handshake), it closes the inner Conn at once,
// which ends that call. Later calls return nil.
func (t *tlsConn) Close() error {
	for {
		s := t.state.Load()
		if s == tlsClosed {
			return nil
		}
		if !t.state.CompareAndSwap(s, tlsClosed) {
			continue
		}
		if s == tlsIdle && t.tc.ConnectionState().HandshakeComplete {
			// This goroutine now owns the connection: no method can start.
			t.stream.closeBy = time.Now().Add(tlsCloseNotifyTimeout)
			_ = t.tc.CloseWrite() // best effort
		}
		return t.inner.Close()
	}
}
