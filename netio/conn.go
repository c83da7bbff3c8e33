package netio

import (
	"os"
	"time"
)

// Conn is a byte transport driven by a single goroutine, the event loop's.
// None of its methods may start a goroutine. Methods are not safe for
// concurrent use, except Close.
type Conn interface {
	// ReadNow reads bytes the transport already has, without blocking. It
	// returns 0, nil when nothing is available, and io.EOF (possibly
	// wrapped) once the peer closed the connection.
	ReadNow(p []byte) (int, error)

	// ReadWait parks the calling goroutine in the runtime's poller until
	// bytes arrive or the deadline passes, then reads them into p. A zero
	// deadline means no deadline. On timeout it returns 0 and an error
	// that satisfies errors.Is(err, os.ErrDeadlineExceeded).
	ReadWait(p []byte, deadline time.Time) (int, error)

	// Arm asks the transport to signal through the returned Readiness when
	// bytes may have arrived. The readiness may signal spuriously and may
	// hold one stale signal, so after Arm the caller must call ReadNow once
	// more before it waits (a byte that arrived before Arm does not always
	// signal). Disarm says the caller stopped waiting; it is cheap, and a
	// transport may keep signalling after it (the SIGIO transport keeps
	// O_ASYNC set until the next ReadWait, so that the next Arm is free).
	// Calling Arm while armed is allowed.
	Arm() (Readiness, error)
	Disarm()

	// Write writes all of p, blocking until done or until the deadline
	// set by SetWriteDeadline.
	Write(p []byte) (int, error)

	// SetWriteDeadline sets the deadline for Write; the zero time means
	// no deadline.
	SetWriteDeadline(t time.Time) error

	// Close closes the connection. It is safe to call more than once and
	// from another goroutine.
	Close() error

	// Transport names the transport ("tcp", "unix", ...), for logs and
	// notifications.
	Transport() string
}

// Aborter is implemented by connections whose Close takes time to end
// gracefully (quic:// waits briefly for the broker to end the control
// stream). Abort closes at once, for a connection given up on: a path
// that stopped answering would only make Close wait in vain.
type Aborter interface {
	Abort() error
}

// WaitInterrupter is implemented by connections whose ReadWait,
// ReadWaitBatch and WaitReadable can be cut short from another
// goroutine: TCP and Unix sockets. InterruptWait makes a wait in progress
// return os.ErrDeadlineExceeded at once; a call while no wait is in
// progress makes the next wait return the same way at once (a cut meant
// for a wait about to begin is never lost); it never affects anything
// else. Safe to call from any goroutine. The event loop uses it so that a
// request or an ack handed to it from another goroutine does not wait for
// the end of a park in the poller.
type WaitInterrupter interface {
	InterruptWait()
}

// ReadableWaiter is implemented by connections that can wait for bytes
// without reading them, and so without holding a buffer: TCP and Unix
// sockets. WaitReadable parks the calling goroutine in the runtime's
// poller until bytes, the peer's close or an error are ready to be read
// (the caller then reads with ReadNow), the deadline passes, or
// InterruptWait cuts the wait short; the last two return an error that
// satisfies errors.Is(err, os.ErrDeadlineExceeded). A zero deadline means
// none. The event loop uses it for its long waits when nothing but the
// broker can wake it (see eventloop.Options.WakeAfterSend): the wait then
// costs what a reader goroutine's costs, and an idle connection keeps no
// read buffer.
type ReadableWaiter interface {
	WaitReadable(deadline time.Time) error
}

// BatchReader is implemented by transports that can gather several
// arrivals into one wakeup (TCP sockets on Linux, through SO_RCVLOWAT):
// ReadWaitBatch is ReadWait, except that the caller is woken only once
// lowat bytes have arrived or the deadline passes, and then reads what
// has arrived, however little. The event loop uses it while a broker
// streams messages, so that it reads many per wakeup rather than one.
type BatchReader interface {
	ReadWaitBatch(p []byte, lowat int, deadline time.Time) (int, error)
}

// Readiness is what Conn.Arm returns: the channels that fire when the
// connection may have bytes to read. A nil channel never fires in a
// select, so the caller waits on all of them without knowing which
// transport it has:
//
//	rd, err := conn.Arm()
//	// ... call conn.ReadNow once more, then:
//	for {
//		select {
//		case <-rd.Signal:
//		case <-rd.Tick:
//		case <-rd.Shared:
//			if !rd.Dispatch() {
//				continue // other connections' bytes: keep waiting
//			}
//		case req := <-requests:
//		case <-ctx.Done():
//		}
//		break
//	}
//
// Two channel types are needed because Go cannot convert between channel
// element types without a goroutine in between: os/signal only delivers
// into a chan os.Signal, and a time.Timer only into a chan time.Time.
type Readiness struct {
	// Signal receives a value when bytes may have arrived on this
	// connection. Values carry no information beyond the wakeup.
	Signal <-chan os.Signal

	// Tick fires when a transport that cannot notify must be polled again
	// (the polling fallback of NewPollConn).
	Tick <-chan time.Time

	// Shared is the process's one SIGIO channel (TCP and Unix sockets on
	// Linux, macOS and the BSDs): every waiting connection of the process
	// selects on it, and the Go runtime hands each signal to one of them.
	// Whoever receives from it must call Dispatch, which wakes the
	// connections whose sockets are ready through their Signal channels.
	Shared <-chan os.Signal
}

// Dispatch is what a receiver of Shared must do: it asks the process's
// readiness set which sockets received bytes and signals their
// connections (each through its Signal channel). It reports whether this
// Readiness's own connection was among them; if it was, its Signal value
// is consumed.
func (r Readiness) Dispatch() bool {
	dispatchReady()
	select {
	case <-r.Signal:
		return true
	default:
		return false
	}
}
