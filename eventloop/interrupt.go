package eventloop

import (
	"errors"
	"fmt"

	"github.com/mqttloop/mqttloop/netio"
)

// A broker that stops reading blocks the loop's writes. The loop has no
// other goroutine to watch the context, Close or the requests channel
// meanwhile, so the connection does it for the loop: a blocked write
// asks writeBlocked every netio.WriteSlice (TCP and Unix sockets, TLS
// and WebSocket over them, and QUIC's control stream; see
// netio.WriteInterrupter) and gives up
// when the run must end. Cancelling the context, Close, Shutdown and
// Disconnect therefore take effect within a slice whatever the socket is
// doing, each with its own error, and the session keeps what was in
// flight.

// interruptWrites installs writeBlocked on a new connection.
func (l *EventLoop) interruptWrites(c netio.Conn) {
	if wi, ok := c.(netio.WriteInterrupter); ok {
		if l.blocked == nil {
			l.blocked = l.writeBlocked
		}
		wi.SetWriteInterrupt(l.blocked)
	}
}

// writeBlocked is called while a write waits for the broker. It reports
// whether the write should give up: the run's context ended, Close was
// called, the loop is saying goodbye (a farewell DISCONNECT is not worth
// waiting for), or a Shutdown or valid Disconnect arrived. It takes the
// other requests arriving meanwhile, as the loop would: publishes,
// subscribes and unsubscribes join the session's queue (nothing is
// written while a write is under way); acks and re-authentications wait
// in l.held until the write is over.
func (l *EventLoop) writeBlocked() bool {
	if l.closed.Load() || l.ctx.Err() != nil || l.leaving || l.stopReq != nil {
		return true
	}
	for l.reqOpen && len(l.held) < requestBatch && l.st.Queued()+len(l.held) < l.opts.MaxQueued {
		select {
		case r, ok := <-l.requests:
			if !ok {
				l.reqOpen, l.reqDone = false, true
				return false
			}
			switch r := r.(type) {
			case Shutdown:
				l.stopReq = r
				return true
			case Disconnect:
				if requestRules(l.opts.ProtocolVersion).disconnect(r, l.opts.SessionExpiry) == nil {
					l.stopReq = r
					return true
				}
				l.held = append(l.held, r)
			case Publish, Subscribe, Unsubscribe, Pause, Resume, Throttle:
				l.accept(r)
			default:
				l.held = append(l.held, r)
			}
		default:
			return false
		}
	}
	return false
}

// takeHeld accepts the requests writeBlocked held back.
func (l *EventLoop) takeHeld() bool {
	if len(l.held) == 0 {
		return false
	}
	held := l.held
	l.held = nil
	for i, r := range held {
		if l.phase == phaseEnded {
			l.failHeld(held[i:])
			break
		}
		l.accept(r)
	}
	return true
}

// failHeld reports requests held back by writeBlocked that the ended
// run will not carry out.
func (l *EventLoop) failHeld(rs []Request) {
	for _, r := range rs {
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: the run ended before the request was carried out", ErrStopped)})
	}
}

// stopRequested ends the run for what interrupted a write: a Shutdown or
// Disconnect taken meanwhile, the context or Close. It reports whether
// the run ended.
func (l *EventLoop) stopRequested(err error) bool {
	if !errors.Is(err, netio.ErrWriteInterrupted) && !l.closed.Load() {
		return false
	}
	l.closeConn()
	return l.checkStop()
}

// takeStopRequest ends the run for a Shutdown or Disconnect that
// writeBlocked took; it reports whether there was one.
func (l *EventLoop) takeStopRequest() bool {
	r := l.stopReq
	if r == nil {
		return false
	}
	l.stopReq = nil
	l.closeConn()
	l.accept(r)
	return true
}
