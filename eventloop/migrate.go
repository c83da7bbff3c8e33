// A change of network without a new MQTT connection: QUIC connection
// migration, driven from the loop's goroutine (see netio.Migrator).

package eventloop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/netio"
)

// DefaultQUICMigrationTimeout is Options.QUICMigrationTimeout's default.
const DefaultQUICMigrationTimeout = 5 * time.Second

// Errors of path changes.
var (
	// ErrPathChangeFailed: the connection's path stopped answering (or
	// Handover was called) and no new path could be validated within
	// Options.QUICMigrationTimeout; the loop fell back to a new
	// connection. It wraps what made the path change necessary.
	ErrPathChangeFailed = errors.New("mqttloop: moving the connection to a new network path failed")
	// ErrHandover: Handover was called on a connection that cannot move
	// to a new path (not QUIC, or Options.QUICNoMigration): the loop
	// replaces the connection instead.
	ErrHandover = errors.New("mqttloop: handover requested")

	errPathStalled = errors.New("mqttloop: QUIC path stalled (no acknowledgement for several probe timeouts)")
)

// PathTrigger says what started a path change.
type PathTrigger int

const (
	// PathHandover: the application called Handover or HandoverFrom.
	PathHandover PathTrigger = iota + 1
	// PathStalled: QUIC's loss detection found the path silent (several
	// probe timeouts in a row without an acknowledgement).
	PathStalled
	// PathPingTimeout: a PINGREQ went unanswered for Options.PingTimeout.
	PathPingTimeout
	// PathAckTimeout: a publish went unacknowledged for
	// Options.AckTimeout.
	PathAckTimeout
)

// String returns the trigger's name.
func (t PathTrigger) String() string {
	switch t {
	case PathHandover:
		return "handover"
	case PathStalled:
		return "path stalled"
	case PathPingTimeout:
		return "ping timeout"
	case PathAckTimeout:
		return "ack timeout"
	}
	return fmt.Sprintf("PathTrigger(%d)", int(t))
}

// PathChanged: the QUIC connection moved to a new network path (a new
// local address or port) without a new MQTT connection: no CONNECT, no
// replay; what the old path lost is retransmitted by QUIC on the new one.
// A path change that fails ends in Disconnected and Reconnecting with an
// error wrapping ErrPathChangeFailed instead.
type PathChanged struct {
	// OldLocal and NewLocal are the local addresses before and after.
	OldLocal, NewLocal net.Addr
	// Took is the time from the trigger (the path found silent, or
	// Handover called) to the switch to the validated new path.
	Took time.Duration
	// Trigger says what started the change.
	Trigger PathTrigger
}

func (PathChanged) isNotification() {}

// migration is the loop's side of a path change.
type migration struct {
	active   bool
	trigger  PathTrigger
	start    time.Time
	deadline time.Time
	next     time.Time // when to step again (probe resend)
	cause    error     // what ends the connection if the change fails
	at       time.Time // when the last change completed

	// From other goroutines: a handover request and the count of path
	// changes.
	request atomic.Pointer[handover]
	changes atomic.Uint64
}

// handover is a request of Handover: the local address to move to (the
// zero Addr for any) and when it was made.
type handover struct {
	local netip.Addr
	at    time.Time
}

// Handover moves the connection to a new network path, for an application
// that knows the network changed (Wi-Fi to cellular, a VPN coming up):
// over QUIC the connection migrates to a new UDP socket (a new local port,
// on whatever interface the system routes through now) and the MQTT
// session simply continues; PathChanged reports it. On a connection that
// cannot migrate (TCP, TLS, WebSocket, Unix, or Options.QUICNoMigration)
// it is replaced by a new one at once (Disconnected with ErrHandover, then
// the usual reconnect). Safe to call from any goroutine; without a
// connection it does nothing.
func (l *EventLoop) Handover() { l.HandoverFrom(netip.Addr{}) }

// HandoverFrom is Handover from a chosen local address, the address of the
// interface to use from now on.
func (l *EventLoop) HandoverFrom(local netip.Addr) {
	l.mig.request.Store(&handover{local: local, at: time.Now()})
	l.poke()
}

// PathChanges returns how many times the loop moved a connection to a new
// network path (PathChanged notifications). Safe to call from any
// goroutine.
func (l *EventLoop) PathChanges() uint64 { return l.mig.changes.Load() }

// migrator returns the connection as a netio.Migrator when the loop may
// migrate it.
func (l *EventLoop) migrator() (netio.Migrator, bool) {
	if l.opts.QUICNoMigration || l.conn == nil {
		return nil, false
	}
	m, ok := l.conn.(netio.Migrator)
	return m, ok
}

// checkPath runs in every connected iteration before the keepalive: it
// starts a path change when the application asked for one or the path
// stalled, and advances one under way. It returns false if the connection
// ended.
func (l *EventLoop) checkPath(now time.Time) bool {
	// A request made before this connection was up is moot: the
	// connection is new.
	if req := l.mig.request.Swap(nil); req != nil && !req.at.Before(l.upSince) {
		if !l.changePath(PathHandover, req.local, ErrHandover, now) {
			return false
		}
	}
	m, ok := l.migrator()
	if !ok {
		return true
	}
	if !l.mig.active && m.PathStalled() {
		if !l.changePath(PathStalled, netip.Addr{}, errPathStalled, now) {
			return false
		}
	}
	if !l.mig.active {
		return true
	}
	st, err := m.StepMigration(now)
	switch {
	case err != nil:
		l.pathChangeFailed(err)
		return false
	case st.Done:
		l.pathChanged(st, now)
		return l.phase == phaseConnected
	case !now.Before(l.mig.deadline):
		m.CancelMigration()
		l.pathChangeFailed(fmt.Errorf("no new path validated within %v", l.opts.QUICMigrationTimeout))
		return false
	}
	l.mig.next = st.Next
	return true
}

// pathLost handles a connection that stopped answering (keepalive or ack
// timeout): it starts a path change where the connection can migrate,
// and otherwise ends the connection as before. While a change is under
// way the timeouts wait for it. It returns false if the connection ended.
func (l *EventLoop) pathLost(trigger PathTrigger, cause error, now time.Time) bool {
	if l.mig.active {
		return true
	}
	if _, ok := l.migrator(); !ok {
		l.lost(cause)
		return false
	}
	return l.changePath(trigger, netip.Addr{}, cause, now)
}

// changePath starts a path change (or, where the connection cannot
// migrate, replaces the connection). It returns false if the connection
// ended.
func (l *EventLoop) changePath(trigger PathTrigger, local netip.Addr, cause error, now time.Time) bool {
	m, ok := l.migrator()
	if !ok {
		if trigger == PathHandover && l.conn != nil {
			l.lost(ErrHandover)
			return false
		}
		return true
	}
	if err := m.StartMigration(local, now); err != nil {
		l.mig.cause = cause
		l.pathChangeFailed(err)
		return false
	}
	l.mig.active = true
	l.mig.trigger = trigger
	l.mig.start = now
	l.mig.deadline = now.Add(l.opts.QUICMigrationTimeout)
	l.mig.next = time.Time{}
	l.mig.cause = cause
	if l.log != nil {
		l.log.Info("mqttloop: moving the connection to a new network path", "trigger", trigger.String(), "from", m.LocalAddr().String())
	}
	return true
}

// pathChanged completes a path change: the session continues on the new
// path. A PINGREQ proves it end to end and restarts the keepalive's
// clock.
func (l *EventLoop) pathChanged(st netio.MigrationStatus, now time.Time) {
	l.mig.active = false
	l.mig.at = now
	l.mig.changes.Add(1)
	l.emit(PathChanged{OldLocal: st.From, NewLocal: st.To, Took: now.Sub(l.mig.start), Trigger: l.mig.trigger})
	if l.write(&packets.Pingreq{}) == nil {
		l.ka.PingSent(now)
	}
}

// pathChangeFailed falls back to a new connection.
func (l *EventLoop) pathChangeFailed(err error) {
	cause := l.mig.cause
	l.mig.active = false
	if cause == nil || errors.Is(cause, ErrHandover) {
		l.lost(fmt.Errorf("%w: %w", ErrPathChangeFailed, err))
		return
	}
	l.lost(fmt.Errorf("%w: %w: %w", ErrPathChangeFailed, err, cause))
}

// resetMigration forgets a path change of a connection that ended.
func (l *EventLoop) resetMigration() {
	l.mig.active = false
	l.mig.cause = nil
}

// migrationWake returns when the loop must wake for a path change under
// way (the zero time when none is).
func (l *EventLoop) migrationWake() time.Time {
	if !l.mig.active {
		return time.Time{}
	}
	if !l.mig.next.IsZero() && l.mig.next.Before(l.mig.deadline) {
		return l.mig.next
	}
	return l.mig.deadline
}

// ackReference is when the ack timeout of a publish sent at sent starts:
// a path change restarts it, since QUIC resends what the old path lost.
func (l *EventLoop) ackReference(sent time.Time) time.Time {
	if l.mig.at.After(sent) {
		return l.mig.at
	}
	return sent
}
