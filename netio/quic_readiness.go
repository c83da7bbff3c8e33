package netio

import (
	"context"
	"os"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// quicWake is the value the tracer sends on Readiness.Signal.
type quicWake struct{}

func (quicWake) String() string { return "quic readable" }

func (quicWake) Signal() {}

// quicReady is the receive accounting of one connection's control stream,
// fed by quic-go's tracer on quic-go's goroutine and read by the loop.
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
	end      int64      // contiguous bytes received on the control stream
	spans    [][2]int64 // received ranges beyond end, unordered
	finAt    int64      // final size once FIN arrived, else -1
	terminal bool       // the stream was reset or the connection closed
	hsDone   bool       // the handshake completed
}

func newQUICReady() *quicReady {
	return &quicReady{sig: make(chan os.Signal, 1), finAt: -1}
}

// controlStreamID is the id of the first client-initiated bidirectional
// stream.
const controlStreamID quic.StreamID = 0

// reset forgets what was received (the control stream was reopened after
// a 0-RTT rejection).
func (r *quicReady) reset() {
	r.mu.Lock()
	r.end, r.spans, r.finAt = 0, nil, -1
	r.mu.Unlock()
}

// readable reports whether a read at readPos would return at once.
func (r *quicReady) readable(readPos int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminal || r.end > readPos || (r.finAt >= 0 && r.end >= r.finAt)
}

// arm enables signalling and queues a signal if there is something to
// read already (or an early handshake to settle).
func (r *quicReady) arm(readPos int64, early bool) {
	r.armed.Store(true)
	r.mu.Lock()
	now := r.terminal || r.end > readPos || (r.finAt >= 0 && r.end >= r.finAt) || (early && r.hsDone)
	r.mu.Unlock()
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
	case qlog.PacketReceived:
		r.mu.Lock()
		for _, f := range e.Frames {
			switch fr := f.Frame.(type) {
			case *qlog.StreamFrame:
				if fr.StreamID == controlStreamID && r.received(fr.Offset, fr.Offset+fr.Length, fr.Fin) {
					changed = true
				}
			case *qlog.ResetStreamFrame:
				if fr.StreamID == controlStreamID {
					r.terminal, changed = true, true
				}
			}
		}
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

// received records the stream bytes [from, to) and reports whether the
// contiguous end or the FIN state moved. Called with mu held.
func (r *quicReady) received(from, to int64, fin bool) bool {
	changed := false
	if fin && r.finAt < 0 {
		r.finAt, changed = to, true
	}
	if to <= r.end {
		return changed
	}
	if from > r.end {
		r.spans = append(r.spans, [2]int64{from, to})
		return changed
	}
	r.end = to
	// Merge the spans the new end reaches, until none does.
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(r.spans); i++ {
			s := r.spans[i]
			if s[0] > r.end {
				continue
			}
			r.end = max(r.end, s[1])
			r.spans[i] = r.spans[len(r.spans)-1]
			r.spans = r.spans[:len(r.spans)-1]
			i--
			merged = true
		}
	}
	return true
}
