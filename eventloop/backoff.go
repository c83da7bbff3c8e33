// What happens between connections: a connection that failed or was lost,
// the choice of the next server, and the back-off wait.

package eventloop

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
)

// connectionDown handles a connection that failed to come up or broke:
// it ends the run, or schedules the next attempt as the policy says.
// wasUp says whether a CONNACK had succeeded on this connection.
func (l *EventLoop) connectionDown(cause error, wasUp bool) {
	if a, ok := l.conn.(netio.Aborter); ok {
		_ = a.Abort() // nothing to wait for on a broken connection
	}
	l.closeConn()
	l.statusDown(cause)
	now := time.Now()
	if !wasUp && l.nextServerAtOnce(cause) {
		return
	}
	if len(l.roundErrs) > 0 {
		cause = &serversError{errs: append(l.roundErrs, cause)}
		l.roundErrs = nil
	}
	if wasUp {
		l.emit(Disconnected{Err: cause})
		l.noteDrop(cause)
		if now.Sub(l.upSince) >= l.opts.HealthyAfter {
			l.sched.Reset() // the connection was healthy: start the delays over
		}
	}
	if l.checkStop() {
		return
	}
	if l.permanent(cause) || !l.opts.Reconnect.Retry(l.connects > 0) {
		l.endLost(cause)
		return
	}
	delay, ok := l.sched.Next()
	if !ok {
		l.endLost(fmt.Errorf("gave up reconnecting after %d attempts: %w", l.attempt, cause))
		return
	}
	l.attempt++
	l.emit(Reconnecting{Attempt: l.attempt, Delay: delay, Err: cause})
	l.retryAt = now.Add(delay)
	l.phase = phaseBackoff
	if l.opts.DropQoS0WhileOffline {
		l.dropQueuedQoS0()
	}
}

// nextServerAtOnce records a failed attempt to connect and reports whether
// another of Servers should be tried at once (see reconnect.Rotation), so
// that a blocked transport (QUIC where UDP is dropped) falls back to the
// next one without waiting for the back-off or ending the run.
func (l *EventLoop) nextServerAtOnce(cause error) bool {
	if l.ctx.Err() != nil || l.closed.Load() {
		l.rotation.NewRound()
		return false
	}
	if !l.rotation.Failed(l.permanent(cause)) {
		return false
	}
	l.roundErrs = append(l.roundErrs, cause)
	if l.log != nil {
		l.log.Info("mqttloop: server failed, trying the next one", "err", cause)
	}
	l.phase = phaseDisconnected
	return true
}

// serversError is the failure of a round that tried every server: one
// error per server, in the order they were tried. errors.Is and errors.As
// look into each.
type serversError struct{ errs []error }

func (e *serversError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return "every server failed: " + strings.Join(msgs, "; ")
}

func (e *serversError) Unwrap() []error { return e.errs }

func (l *EventLoop) endLost(cause error) {
	l.end(nil, fmt.Errorf("%w: %w", ErrConnectionLost, cause))
}

// permanent reports whether retrying cannot fix a refusal (see
// reconnect.Permanent): only a CONNACK's reason code can say so. With
// Options.Credentials, bad credentials and not authorized are not
// permanent: the hook supplies new ones at the next attempt (an expired
// token is refused like a wrong one).
func (l *EventLoop) permanent(err error) bool {
	var rerr *ReasonCodeError
	if !errors.As(err, &rerr) || rerr.Packet != "CONNACK" || !reconnect.Permanent(rerr.Code) {
		return false
	}
	if l.opts.Credentials != nil && (rerr.Code == 0x86 || rerr.Code == 0x87) {
		return false
	}
	return true
}

// backoffStep waits for the next connection attempt while still taking
// requests into the session (the offline queue), until the delay is over,
// the context ends or the loop is closed.
func (l *EventLoop) backoffStep() {
	took := l.takeRequests()
	l.noteQueue()
	// What the session took (here, or before the connection was lost) is
	// durable before the loop waits or dials: a process killed during the
	// back-off must not lose it (found by internal/sim, seed 231).
	if !l.commit() || took || l.phase != phaseBackoff {
		return
	}
	now := time.Now()
	if !now.Before(l.retryAt) {
		l.phase = phaseDisconnected
		return
	}
	if l.waitOver() {
		return
	}
	var reqs <-chan Request
	if l.canTake() {
		reqs = l.requests
	}
	l.timer.Reset(l.retryAt.Sub(now))
	l.publishCounts()
	select {
	case r, ok := <-reqs:
		if !ok {
			l.reqOpen, l.reqDone = false, true
		} else {
			l.accept(r)
		}
	case <-l.timer.C:
	case <-l.ctx.Done():
	case <-l.waitDone:
		l.waitEnded = true
	case <-l.wake:
	}
	l.commit() // requests taken while offline are durable now
}

// dropQueuedQoS0 removes queued QoS 0 publishes, reporting each as
// Dropped (Options.DropQoS0WhileOffline).
func (l *EventLoop) dropQueuedQoS0() {
	for _, p := range l.st.DropQueuedQoS0() {
		l.emit(Dropped{Request: requestOf(p), Reason: ErrOffline})
	}
}
