package netio

import (
	"errors"
	"os"
	"time"
)

// ErrWriteInterrupted: a Write blocked because the peer stopped reading
// was cut short by the function installed with SetWriteInterrupt. The
// connection is unusable afterwards (part of a packet may have gone out).
var ErrWriteInterrupted = errors.New("netio: write interrupted")

// WriteInterrupter is implemented by connections whose blocked Write can
// be cut short without another goroutine: TCP and Unix sockets, TLS and
// WebSocket over them, and quic:// (its control stream, blocked when the
// broker's flow control window is exhausted; its data streams never
// block). While a Write cannot go on (the peer's window is full), it
// waits in slices of WriteSlice and calls stop between slices; when stop
// returns true, Write returns ErrWriteInterrupted. The write deadline
// still applies. nil removes the function. stop runs on the goroutine
// calling Write.
type WriteInterrupter interface {
	SetWriteInterrupt(stop func() bool)
}

// WriteSlice is how long a Write of a WriteInterrupter waits for the peer
// before it asks its stop function.
const WriteSlice = 20 * time.Millisecond

// deadlineWriter is the part of a net.Conn a sliced write needs.
type deadlineWriter interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
}

// slicedWrite writes all of p to w before deadline (zero: none), asking
// stop every WriteSlice while w does not take it. w must allow a write
// to go on after a timeout (a socket and a quic-go stream do; a tls.Conn
// does not).
func slicedWrite(w deadlineWriter, p []byte, deadline time.Time, stop func() bool) (int, error) {
	done := 0
	for {
		d := time.Now().Add(WriteSlice)
		if !deadline.IsZero() && deadline.Before(d) {
			d = deadline
		}
		if err := w.SetWriteDeadline(d); err != nil {
			return done, err
		}
		n, err := w.Write(p[done:])
		done += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return done, err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return done, err
		}
		if stop() {
			return done, ErrWriteInterrupted
		}
	}
}
