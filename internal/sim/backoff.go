package sim

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// seededBackOff is the loop's reconnect back-off (Options.BackOff):
// cenkalti's exponential back-off with its own randomization off (it would
// draw from math/rand's global source), plus jitter drawn from a source
// seeded by the run's seed and the loop's number, so that the delays are
// a function of the seed.
type seededBackOff struct {
	exp    *backoff.ExponentialBackOff
	rng    *rand.Rand
	jitter float64
}

func newSeededBackOff(cfg *Config, loop int) *seededBackOff {
	e := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(cfg.BackoffInitial),
		backoff.WithMaxInterval(cfg.BackoffMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxElapsedTime(0),
	)
	e.Reset()
	return &seededBackOff{exp: e, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(loop))), jitter: cfg.BackoffJitter}
}

// NextBackOff implements backoff.BackOff.
func (b *seededBackOff) NextBackOff() time.Duration {
	d := b.exp.NextBackOff()
	if d == backoff.Stop || b.jitter == 0 {
		return d
	}
	f := 1 + b.jitter*(2*b.rng.Float64()-1)
	return time.Duration(float64(d) * f)
}

// Reset implements backoff.BackOff.
func (b *seededBackOff) Reset() { b.exp.Reset() }

// backoffModel is the harness's independent expectation of the schedule:
// exponential from Initial, doubling up to Max, restarted by Reset.
type backoffModel struct {
	initial, max, next time.Duration
	jitter             float64
}

func (m *backoffModel) reset() { m.next = m.initial }

// take returns the interval the next delay must lie in, and advances.
func (m *backoffModel) take() (lo, hi time.Duration) {
	base := m.next
	if float64(m.next) >= float64(m.max)/2 {
		m.next = m.max
	} else {
		m.next *= 2
	}
	j := time.Duration(float64(base) * m.jitter)
	return base - j - 1, base + j + 1
}
