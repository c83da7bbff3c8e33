package eventloop

import (
	"errors"
	"time"

	"github.com/mqttloop/mqttloop/state"
)

// Reasons of a Dropped notification for the queue's policies.
var (
	// ErrSpoolFull: the request did not fit in the offline spool's byte
	// budget (Options.SpoolBytes); it was not queued.
	ErrSpoolFull = state.ErrSpoolFull
	// ErrMessageExpired: the publish's Message Expiry (Publish.Properties
	// MessageExpiry, MQTT 5) ran out while it waited in the queue; it was
	// never sent.
	ErrMessageExpired = state.ErrExpired
)

// spoolOf is the session's spool for the options: the window is
// MaxQueued, the budget SpoolBytes; none without a store.
func spoolOf(o *Options) state.Spool {
	if o.Store == nil || o.SpoolBytes == 0 {
		return state.Spool{}
	}
	return state.Spool{Window: o.MaxQueued, Bytes: o.SpoolBytes}
}

// spooling reports whether the queue spills to the store beyond
// MaxQueued (Options.SpoolBytes).
func (l *EventLoop) spooling() bool { return l.opts.Store != nil && l.opts.SpoolBytes != 0 }

// enqueue queues a request taken from the channel, applying the queue's
// policies; one the spool has no room for is reported as Dropped.
func (l *EventLoop) enqueue(p state.Pending, r Request) {
	if l.spooling() && l.st.Spooling() {
		// Only the user's Tag stays in memory; the request is rebuilt
		// from its packet when it completes.
		p.Tag = nil
		if t := userTag(r); t != nil {
			p.Tag = spooledTag{t}
		}
	}
	if err := l.st.EnqueueAt(p, time.Now()); err != nil {
		if errors.Is(err, state.ErrSpoolFull) {
			l.emit(Dropped{Request: r, Reason: err})
			return
		}
		l.emit(RequestFailed{Request: r, Err: err})
	}
}

// expired reports a queued publish whose Message Expiry ran out.
func (l *EventLoop) expired(next state.ToSend) bool {
	if !errors.Is(next.Err, state.ErrExpired) {
		return false
	}
	l.emit(Dropped{Request: requestOf(next.Pending), Reason: next.Err})
	return true
}

// spooledTag is the state.Pending.Tag of a request spooled to the store:
// the user's Tag, without the request.
type spooledTag struct{ tag any }

func userTag(r Request) any {
	switch r := r.(type) {
	case Publish:
		return r.Tag
	case Subscribe:
		return r.Tag
	case Unsubscribe:
		return r.Tag
	}
	return nil
}

// withTag puts back the user's Tag of a spooled request into the request
// rebuilt from its packet.
func withTag(r Request, tag any) Request {
	st, ok := tag.(spooledTag)
	if !ok {
		return r
	}
	switch q := r.(type) {
	case Publish:
		q.Tag = st.tag
		return q
	case Subscribe:
		q.Tag = st.tag
		return q
	case Unsubscribe:
		q.Tag = st.tag
		return q
	}
	return r
}
