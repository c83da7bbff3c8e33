package keepalive

import "time"

// Action is what the caller must do now.
type Action int

const (
	// Wait means nothing is due; check again at the returned time.
	Wait Action = iota
	// SendPing means a PINGREQ is due; send it and call PingSent.
	SendPing
	// Dead means a PINGREQ went unanswered for the ping timeout; the
	// connection must be closed.
	Dead
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Wait:
		return "wait"
	case SendPing:
		return "send-ping"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// Timer is the shared keepalive timer of one connection. The zero value is
// disabled (keepalive 0: no PINGREQ is ever sent and no death is detected).
type Timer struct {
	interval     time.Duration
	pingTimeout  time.Duration
	lastSent     time.Time
	lastReceived time.Time
	pingSentAt   time.Time // zero when no PINGREQ is outstanding
}

// New returns a timer for a connection established at now. interval is the
// MQTT keepalive (0 disables the timer); pingTimeout is how long to wait for
// any packet after a PINGREQ before declaring the connection dead (0 means
// the interval itself).
func New(interval, pingTimeout time.Duration, now time.Time) *Timer {
	if pingTimeout <= 0 {
		pingTimeout = interval
	}
	return &Timer{interval: interval, pingTimeout: pingTimeout, lastSent: now, lastReceived: now}
}

// Interval returns the keepalive interval in force.
func (t *Timer) Interval() time.Duration { return t.interval }

// SetInterval changes the interval, e.g. to the Server Keep Alive the broker
// sent in CONNACK. A ping timeout that was derived from the old interval is
// not changed.
func (t *Timer) SetInterval(d time.Duration) { t.interval = d }

// Sent records that a packet was written at now.
func (t *Timer) Sent(now time.Time) { t.lastSent = now }

// Received records that bytes arrived at now: a whole packet or part of
// one (a large message on a slow link is proof of life all along, and
// the PINGRESP may be queued behind it). It answers any outstanding
// PINGREQ.
func (t *Timer) Received(now time.Time) {
	t.lastReceived = now
	t.pingSentAt = time.Time{}
}

// PingSent records that a PINGREQ was written at now.
func (t *Timer) PingSent(now time.Time) {
	t.lastSent = now
	t.pingSentAt = now
}

// PingOutstanding reports whether a PINGREQ awaits an answer.
func (t *Timer) PingOutstanding() bool { return !t.pingSentAt.IsZero() }

// Check says what is due at now, and when the caller should check again if
// nothing is (the zero time when the timer is disabled).
func (t *Timer) Check(now time.Time) (Action, time.Time) {
	if t.interval <= 0 {
		return Wait, time.Time{}
	}
	if !t.pingSentAt.IsZero() {
		deadline := t.pingSentAt.Add(t.pingTimeout)
		if !now.Before(deadline) {
			return Dead, time.Time{}
		}
		return Wait, deadline
	}
	quietSince := t.lastSent
	if t.lastReceived.Before(quietSince) {
		quietSince = t.lastReceived
	}
	due := quietSince.Add(t.interval - pingEarly(t.interval))
	if !now.Before(due) {
		return SendPing, time.Time{}
	}
	return Wait, due
}

// pingEarly is how long before the end of the keepalive period the PINGREQ
// is sent.
func pingEarly(interval time.Duration) time.Duration {
	return min(interval/4, time.Second)
}
