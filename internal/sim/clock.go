package sim

import "time"

// event is something the network, the broker or the script does at a
// virtual time. Events at the same time run in the order they were
// scheduled (seq).
type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

// eventQueue is a binary min-heap of events ordered by (at, seq).
type eventQueue []event

func (q eventQueue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = event{}
	h = h[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}

// at schedules fn at virtual time t (never in the past). Call with s.mu
// held.
func (s *Sim) at(t time.Duration, fn func()) {
	if t < s.now {
		t = s.now
	}
	s.seq++
	s.queue.push(event{at: t, seq: s.seq, fn: fn})
	if !s.driving {
		// Scheduled from the event loop's goroutine (a write, a dial, a
		// notification): the driver may be asleep until a later event.
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// after schedules fn d from now.
func (s *Sim) after(d time.Duration, fn func()) { s.at(s.now+d, fn) }

// tick reads the bubble's virtual clock into s.now (call with s.mu held).
func (s *Sim) tick() { s.now = time.Since(s.t0) }

// uniform returns a duration uniformly distributed in [lo, hi].
func (s *Sim) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// exp returns an exponentially distributed duration with the given mean.
func (s *Sim) exp(mean time.Duration) time.Duration {
	return time.Duration(s.rng.ExpFloat64() * float64(mean))
}
