// Package reconnect decides whether and when an event loop connects again
// after a connection fails or is lost. It is pure: no clock reads, no
// goroutines.
package reconnect

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Policy says which connection failures are retried.
type Policy int

const (
	// Never retries nothing: a failed or lost connection ends the run with
	// its error. The session (MqttState) can continue in a later run.
	Never Policy = iota
	// Automatic retries every failure, the first connection attempt
	// included.
	Automatic
	// AfterFirstSuccess ends the run when the first connection attempt
	// fails (so a wrong address or credentials surface at once) and retries
	// every loss after a CONNACK has succeeded once.
	AfterFirstSuccess
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
func (p Policy) Valid() bool { return p >= Never && p <= AfterFirstSuccess }

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
