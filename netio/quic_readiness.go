package netio

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// quicWake is the value the tracer sends on Readiness.Signal.
type quicWake struct{}

func (quicWake) String() string { return "quic readable" }

func (quicWake) Signal() {}

// MaxQUICStreams is how many bidirectional streams a quic:// connection
// opens at most: the control stream and up to nine data streams. It is the
// default of EMQX's QUIC listener (peer_bidi_stream_count = 10), which
// refuses more.
const MaxQUICStreams = 10

// streamAcct is the receive accounting of one stream.
type streamAcct struct {
	end   int64      // contiguous bytes received
	spans [][2]int64 // received ranges beyond end, unordered
	finAt int64      // final size once FIN arrived, else -1
	reset bool       // the peer reset the stream
}

// readable reports whether a read at readPos would return at once.
func (a *streamAcct) readable(readPos int64) bool {
	return a.reset || a.end > readPos || (a.finAt >= 0 && a.end >= a.finAt)
}

// quicReady is the receive accounting of one connection's streams, fed by
// quic-go's tracer on quic-go's goroutine and read by the loop, plus what
// the tracer learns for the loop about the path (probe timeouts, answers
// to path probes) and about send credit.
//
// Why no bytes can be stranded: the tracer runs after quic-go has put a
// packet's stream data into the stream; it then updates the accounting
// under mu and, if armed, signals. The loop arms (armed = true) before its
// last ReadNow, which consults the accounting under mu. Either that
// ReadNow sees the update (and reads), or the update came later, in which
// case the tracer sees armed and signals. Arm also queues a signal itself
// when the accounting already shows unread bytes.
type quicReady struct {
	sig   chan os.Signal
	armed atomic.Bool

	mu       sync.Mutex
	acct     [MaxQUICStreams]streamAcct // by client bidirectional stream number (id / 4)
	terminal bool                       // the connection closed
	hsDone   bool                       // the handshake completed

	// Path: the probe timeout count quic-go reports, the count at the
	// last migration (stalled means ptoBase + QUICStallProbes reached),
	// and how many PATH_RESPONSE frames arrived.
	pto, ptoBase uint32
	pathAnswers  uint64
	// Silence: when the first ack-eliciting packet sent since the last
	// packet received left (zero: none is waiting), the round-trip
	// estimates, and whether the silence has lasted QUICStallProbes probe
	// timeouts (see silentFor).
	unanswered   time.Time
	srtt, rttvar time.Duration
	silent       bool
	// credit counts MAX_DATA and MAX_STREAM_DATA frames: send credit
	// that may unblock a write that would have blocked.
	credit uint64
}

func newQUICReady() *quicReady {
	r := &quicReady{sig: make(chan os.Signal, 1)}
	r.resetLocked()
	return r
}

// streamIndex returns the accounting slot of a client-initiated
// bidirectional stream, or -1.
func streamIndex(id quic.StreamID) int {
	if id&3 != 0 || id>>2 >= MaxQUICStreams {
		return -1
	}
	return int(id >> 2)
}

// reset forgets what was received (the streams were reopened after a 0-RTT
// rejection).
func (r *quicReady) reset() {
	r.mu.Lock()
	r.resetLocked()
	r.mu.Unlock()
}

func (r *quicReady) resetLocked() {
	for i := range r.acct {
		r.acct[i] = streamAcct{finAt: -1}
	}
}

// readable reports whether a read of stream i at readPos would return at
// once.
func (r *quicReady) readable(i int, readPos int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminal || r.acct[i].readable(readPos)
}

// readableAny reports whether a read of any stream, at the positions in
// readPos (indexed like the accounting; only len(readPos) streams are
// looked at), would return at once.
func (r *quicReady) readableAny(readPos []int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.terminal {
		return true
	}
	for i, pos := range readPos {
		if pos >= 0 && r.acct[i].readable(pos) {
			return true
		}
	}
	return false
}

// arm enables signalling and queues a signal if there is something to
// read already (or an early handshake to settle, or a stalled path).
func (r *quicReady) arm(readPos []int64, early bool) {
	r.armed.Store(true)
	now := r.readableAny(readPos)
	if !now {
		r.mu.Lock()
		now = (early && r.hsDone) || r.stalledLocked()
		r.mu.Unlock()
	}
	if now {
		r.wake()
	}
}

func (r *quicReady) wake() {
	select {
	case r.sig <- quicWake{}:
	default:
	}
}

// stalled reports whether the path stopped answering (see
// Migrator.PathStalled).
func (r *quicReady) stalled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stalledLocked()
}

func (r *quicReady) stalledLocked() bool {
	return r.silent || r.pto >= r.ptoBase+QUICStallProbes
}

// migrated restarts the stall detection on a new path.
func (r *quicReady) migrated() {
	r.mu.Lock()
	r.ptoBase = r.pto
	r.silent = false
	r.unanswered = time.Time{}
	r.mu.Unlock()
}

// quicPeerAckDelay is the maximum ACK delay assumed for the peer: quic-go's
// and the QUIC default (RFC 9000, max_ack_delay).
const quicPeerAckDelay = 25 * time.Millisecond

// silentFor is how long the peer may stay silent while an ack-eliciting
// packet waits before the path counts as stalled: QUICStallProbes + 1
// probe timeouts (RFC 9002 section 6.2.1: smoothed RTT + max(4 × RTT
// variation, 1 ms) + the peer's maximum ACK delay), the time the
// consecutive timeouts would take with quic-go doubling each. quic-go's own
// probe timeouts only count when nothing else is sent: each packet sent
// restarts the timer, so a client that keeps publishing into a dead path
// would not see them before its window of messages in flight is full
// (measured: 0.6 s at 200 messages per second on loopback).
func (r *quicReady) silentFor() time.Duration {
	pto := r.srtt + max(4*r.rttvar, time.Millisecond) + quicPeerAckDelay
	if r.srtt == 0 {
		pto = 3 * quicProbeInterval // no sample yet: quic-go's initial estimate
	}
	return max((QUICStallProbes+1)*pto, quicMinSilence)
}

// quicMinSilence is the shortest silence taken for a stalled path: on a
// short path three probe timeouts are below 0.1 s, which a busy machine
// (or a garbage collection on either side) can stay silent for without
// anything wrong with the network. Measured: at a load average of 23 on
// two cores, 90 ms of silence moved healthy loopback connections.
const quicMinSilence = 250 * time.Millisecond

// ackEliciting reports whether a packet with these frames asks for an
// acknowledgement (anything but ACK, PADDING and CONNECTION_CLOSE).
func ackEliciting(frames []qlog.Frame) bool {
	for _, f := range frames {
		switch f.Frame.(type) {
		case *qlog.AckFrame, *qlog.ConnectionCloseFrame:
		default:
			return true
		}
	}
	return false
}

// creditSeen returns the count of frames that gave send credit.
func (r *quicReady) creditSeen() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.credit
}

// tracer is quic.Config.Tracer.
func (r *quicReady) tracer(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return r
}

// AddProducer implements qlogwriter.Trace.
func (r *quicReady) AddProducer() qlogwriter.Recorder { return r }

// Close implements qlogwriter.Recorder.
func (r *quicReady) Close() error { return nil }

// RecordEvent implements qlogwriter.Recorder: it runs on quic-go's
// goroutine after each packet was handled and at state changes.
func (r *quicReady) RecordEvent(ev qlogwriter.Event) {
	changed := false
	switch e := ev.(type) {
	case qlog.PacketSent:
		if !ackEliciting(e.Frames) {
			break
		}
		now := time.Now()
		r.mu.Lock()
		changed = r.checkSilence(now)
		r.mu.Unlock()
	case qlog.MetricsUpdated:
		if e.SmoothedRTT > 0 {
			r.mu.Lock()
			r.srtt, r.rttvar = e.SmoothedRTT, e.RTTVariance
			r.mu.Unlock()
		}
	case qlog.PacketReceived:
		r.mu.Lock()
		r.unanswered, r.silent = time.Time{}, false
		for _, f := range e.Frames {
			switch fr := f.Frame.(type) {
			case *qlog.StreamFrame:
				if i := streamIndex(fr.StreamID); i >= 0 && r.received(&r.acct[i], fr.Offset, fr.Offset+fr.Length, fr.Fin) {
					changed = true
				}
			case *qlog.ResetStreamFrame:
				if i := streamIndex(fr.StreamID); i >= 0 {
					r.acct[i].reset, changed = true, true
				}
			case *qlog.PathResponseFrame:
				r.pathAnswers++
				changed = true
			case *qlog.MaxDataFrame, *qlog.MaxStreamDataFrame:
				r.credit++
				changed = true
			}
		}
		r.mu.Unlock()
	case qlog.PTOCountUpdated:
		now := time.Now()
		r.mu.Lock()
		was := r.stalledLocked()
		r.pto = e.PTOCount
		if e.PTOCount == 0 {
			r.ptoBase = 0 // something was acknowledged
		}
		r.checkSilence(now)
		changed = r.stalledLocked() && !was
		r.mu.Unlock()
	case qlog.ConnectionClosed:
		r.mu.Lock()
		r.terminal, changed = true, true
		r.mu.Unlock()
	case qlog.ConnectionStateUpdated:
		if e.State == qlog.ConnectionStateHandshakeComplete {
			r.mu.Lock()
			r.hsDone, changed = true, true
			r.mu.Unlock()
		}
	}
	if changed && r.armed.Load() {
		r.wake()
	}
}

// checkSilence notes an ack-eliciting packet sent (or a probe timeout) at
// now and reports whether the path just became stalled by silence. Called
// with mu held.
func (r *quicReady) checkSilence(now time.Time) bool {
	if r.unanswered.IsZero() {
		r.unanswered = now
		return false
	}
	if r.silent || now.Sub(r.unanswered) < r.silentFor() {
		return false
	}
	r.silent = true
	return true
}

// received records the stream bytes [from, to) of one stream and reports
// whether its contiguous end or its FIN state moved. Called with mu held.
func (r *quicReady) received(a *streamAcct, from, to int64, fin bool) bool {
	changed := false
	if fin && a.finAt < 0 {
		a.finAt, changed = to, true
	}
	if to <= a.end {
		return changed
	}
	if from > a.end {
		a.spans = append(a.spans, [2]int64{from, to})
		return changed
	}
	a.end = to
	// Merge the spans the new end reaches, until none does.
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(a.spans); i++ {
			s := a.spans[i]
			if s[0] > a.end {
				continue
			}
			a.end = max(a.end, s[1])
			a.spans[i] = a.spans[len(a.spans)-1]
			a.spans = a.spans[:len(a.spans)-1]
			i--
			merged = true
		}
	}
	return true
}
