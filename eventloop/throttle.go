package eventloop

import (
	"fmt"
	"time"
)

// throttle is a token bucket capping outgoing publishes (Throttle request).
type throttle struct {
	rate   float64 // publishes per second; 0: no cap
	burst  float64
	tokens float64
	last   time.Time
}

func (t *throttle) set(r Throttle, now time.Time) error {
	if r.PerSecond < 0 || r.Burst < 0 {
		return fmt.Errorf("%w: Throttle{PerSecond: %v, Burst: %d} is negative", ErrInvalidRequest, r.PerSecond, r.Burst)
	}
	t.rate = r.PerSecond
	t.burst = float64(max(r.Burst, 1))
	t.tokens = t.burst
	t.last = now
	return nil
}

// ready reports whether a publish may go now, and if not, when one may.
func (t *throttle) ready(now time.Time) (bool, time.Time) {
	if t.rate == 0 {
		return true, time.Time{}
	}
	t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
	if t.tokens >= 1 {
		return true, time.Time{}
	}
	return false, now.Add(time.Duration((1 - t.tokens) / t.rate * float64(time.Second)))
}

// spend takes a token for a publish sent.
func (t *throttle) spend() {
	if t.rate != 0 {
		t.tokens--
	}
}
