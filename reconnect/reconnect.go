package reconnect

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy says which connection failures are retried. The zero value is
// AfterFirstSuccess.
type Policy int

const (
	// AfterFirstSuccess, the zero value, ends the run when the first
	// connection attempt fails (so a wrong address or credentials surface
	// at once) and retries every loss after a CONNACK has succeeded once.
	AfterFirstSuccess Policy = iota
	// Never retries nothing: a failed or lost connection ends the run with
	// its error. The session (MqttState) can continue in a later run.
	Never
	// Automatic retries every failure, the first connection attempt
	// included.
	Automatic
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case Never:
		return "never"
	case Automatic:
		return "automatic"
	case AfterFirstSuccess:
		return "after-first-success"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Valid reports whether p is one of the defined policies.
func (p Policy) Valid() bool { return p >= AfterFirstSuccess && p <= Automatic }

// Retry reports whether a failure is retried under p, given whether any
// connection of this session's run has succeeded (received a successful
// CONNACK) before.
func (p Policy) Retry(connectedBefore bool) bool {
	switch p {
	case Automatic:
		return true
	case AfterFirstSuccess:
		return connectedBefore
	}
	return false
}

// Schedule hands out the delays between connection attempts.
type Schedule struct {
	b backoff.BackOff
}

// DefaultBackOff returns the default delay schedule: exponential from 250 ms
// to 30 s with ±50 % jitter, never giving up.
func DefaultBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	b.Reset()
	return b
}

// NewSchedule returns a schedule over b (DefaultBackOff when nil).
func NewSchedule(b backoff.BackOff) *Schedule {
	if b == nil {
		b = DefaultBackOff()
	}
	return &Schedule{b: b}
}

// Next returns the delay before the next attempt, and false when the
// back-off gave up.
func (s *Schedule) Next() (time.Duration, bool) {
	d := s.b.NextBackOff()
	if d == backoff.Stop {
		return 0, false
	}
	return d, true
}

// Reset starts the schedule over, after a connection has been healthy.
func (s *Schedule) Reset() { s.b.Reset() }

// Permanent reports whether a broker's refusal of a connection, given as
// the MQTT 5 reason code of its CONNACK, is one that retrying cannot fix:
// unsupported protocol version (0x84), client identifier not valid (0x85),
// bad user name or password (0x86), not authorized (0x87), banned (0x8A),
// bad authentication method (0x8C). An event loop ends its run on these
// under every policy. Other refusals, such as server busy (0x89) or server
// unavailable (0x88), may pass and are retried as the policy says. MQTT
// 3.1.1 return codes are given as the MQTT 5 code of the same meaning.
func Permanent(connackReason byte) bool {
	switch connackReason {
	case 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C:
		return true
	}
	return false
}

// Rotation chooses which of several servers to connect to next. Servers
// are tried in order, in rounds: within a round, a server that cannot be
// reached is followed at once by the next one, so that a blocked transport
// (QUIC where UDP is dropped) falls back to the next server without a
// back-off delay; only when every server of the round has failed does the
// policy decide whether to wait and retry. A round begins when a
// connection succeeds, is lost, or a retry delay ends.
type Rotation struct {
	servers int
	tries   int // attempts so far: the next server is tries % servers
	failed  int // failures in the current round
}

// NewRotation returns a rotation over n servers (n ≥ 1).
func NewRotation(n int) *Rotation { return &Rotation{servers: max(n, 1)} }

// Next returns the index of the server to try now and moves on.
func (r *Rotation) Next() int {
	i := r.tries % r.servers
	r.tries++
	return i
}

// Failed records that the attempt to reach the server last returned by
// Next failed before the broker accepted the connection. It reports
// whether the next server should be tried at once (the round goes on):
// false when the failure is permanent (see Permanent: no server can fix
// it) or when every server of the round has now failed; the round then
// ends and the caller applies its policy.
func (r *Rotation) Failed(permanent bool) (tryNextNow bool) {
	if permanent || r.failed+1 >= r.servers {
		r.failed = 0
		return false
	}
	r.failed++
	return true
}

// NewRound starts a new round: after a successful connection, or when a
// retry delay ended.
func (r *Rotation) NewRound() { r.failed = 0 }

// InRound returns how many servers have failed in the current round.
func (r *Rotation) InRound() int { return r.failed }
