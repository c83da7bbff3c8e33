package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/state/internal/tracked"
)

// Errors of the offline spool and the queue's policies.
var (
	// ErrSpoolFull: the request does not fit in the spool's byte budget
	// (Spool.Bytes); it was not queued.
	ErrSpoolFull = errors.New("offline spool full")
	// ErrExpired: a publish's Message Expiry Interval ran out while it
	// waited in the queue; it was removed, never sent.
	ErrExpired = errors.New("message expired while queued")
)

// Spool lets the queue of a session with a store grow beyond memory: the
// first Window requests waiting to be sent are kept in memory, the ones
// after them only in the store, up to Bytes of records, and they come back
// into memory, in order, as the ones before them are sent.
type Spool struct {
	// Window is how many queued requests stay in memory; 0 keeps them all
	// there (no spool).
	Window int
	// Bytes caps the size of the records of the requests spooled beyond
	// the window (key and value, as FORMAT.md encodes them); EnqueueAt
	// refuses a request that would exceed it with ErrSpoolFull. 0: no
	// cap.
	Bytes int64
}

// spool is the part of the queue beyond its window: n requests whose
// records (bytes in all) the store holds, or will hold at the next Commit
// (pending), at keys from 'from' on.
type spool struct {
	cfg   Spool
	n     int
	bytes int64
	from  int64
	// pending: records not yet committed, encoded in buf (key in
	// [start, keyEnd), value up to end).
	buf     []byte
	pending []span
	// tags of spooled requests that have one, by key (in memory only).
	tags map[int64]any
}

type span struct{ start, keyEnd, end int }

// SetSpool sets the spool of a session with a store (see Spool). Without
// a store (AttachStore, LoadStore) the queue stays in memory. Lowering
// the window does not move requests already in memory.
func (s *MqttState) SetSpool(sp Spool) { s.spool.cfg = sp }

// Spooling reports whether the next request EnqueueAt accepts goes to the
// store (beyond the window) rather than to memory.
func (s *MqttState) Spooling() bool { return s.spooling() }

// Spooled returns the number of queued requests kept only in the store
// beyond the window, and the size of their records.
func (s *MqttState) Spooled() (n int, bytes int64) { return s.spool.n, s.spool.bytes }

// spooling reports whether new requests go to the store rather than to
// memory.
func (s *MqttState) spooling() bool {
	return s.trk != nil && s.spool.cfg.Window > 0 &&
		(s.spool.n > 0 || s.queue.Len() >= s.spool.cfg.Window)
}

// EnqueueAt accepts a request into the session at time now, as Enqueue
// does, with the spool (SetSpool) and the queue's policies:
//
//   - a PUBLISH with a Message Expiry Interval expires at now plus the
//     interval (Pending.Expires, unless already set): NextToSendAt drops it
//     after that and sends it before with what remains of the interval;
//   - beyond the spool's window, the request is encoded for the store
//     (written at the next Commit) and not kept in memory, but for its
//     Tag, when not nil (keep it small: the loop keeps only the user's
//     Tag); with the spool's byte budget used up it is refused with
//     ErrSpoolFull and nothing changes.
func (s *MqttState) EnqueueAt(p Pending, now time.Time) error {
	if pub, ok := p.Packet.(*packets.Publish); ok && p.Expires.IsZero() && !now.IsZero() &&
		pub.Properties != nil && pub.Properties.MessageExpiry != nil {
		p.Expires = now.Add(time.Duration(*pub.Properties.MessageExpiry) * time.Second)
	}
	if !s.spooling() {
		s.queue.PushBack(p)
		return nil
	}
	sp := &s.spool
	st := len(sp.buf)
	key := s.queue.Next()
	buf := appendQueueKey(sp.buf, key)
	ke := len(buf)
	buf = appendQueued(buf, p)
	size := int64(len(buf) - st)
	if sp.cfg.Bytes > 0 && sp.bytes+size > sp.cfg.Bytes {
		sp.buf = buf[:st]
		return fmt.Errorf("%w: %d bytes spooled, %d more would exceed the budget of %d", ErrSpoolFull, sp.bytes, size, sp.cfg.Bytes)
	}
	s.queue.Reserve()
	if p.Tag != nil && !isResubscribe(p) {
		if sp.tags == nil {
			sp.tags = make(map[int64]any)
		}
		sp.tags[key] = p.Tag
	}
	sp.buf = buf
	sp.pending = append(sp.pending, span{st, ke, len(buf)})
	if sp.n == 0 {
		sp.from = key
	}
	sp.n++
	sp.bytes += size
	return nil
}

// spoolPuts appends the spool's pending records to the batch.
func (t *tracker) spoolPuts(sp *spool) {
	for _, r := range sp.pending {
		t.batch.Puts = append(t.batch.Puts, Record{Kind: KindQueued,
			Key: sp.buf[r.start:r.keyEnd:r.keyEnd], Value: sp.buf[r.keyEnd:r.end:r.end]})
	}
}

// committed forgets the pending records once the store has them.
func (sp *spool) committed() {
	sp.buf = sp.buf[:0]
	sp.pending = sp.pending[:0]
	if cap(sp.buf) > 1<<20 {
		sp.buf = nil // a burst's buffer is not kept
	}
}

// refill brings spooled requests back into memory once the ones there
// run low: after a Commit, so the store holds every spooled record.
func (s *MqttState) refill() error {
	sp := &s.spool
	if s.trk == nil || sp.n == 0 || len(sp.pending) > 0 {
		return nil
	}
	w := max(sp.cfg.Window, 1)
	if s.queue.Len() > w/2 {
		return nil
	}
	want := min(w-s.queue.Len(), sp.n)
	es := make([]tracked.Entry[Pending], 0, want)
	var bytes int64
	var derr error
	last := sp.from - 1
	err := s.trk.store.Scan(KindQueued, appendQueueKey(nil, sp.from), func(k, v []byte) bool {
		key, p, ok := decodeQueuedKey(k)
		d := dec{b: v}
		if !ok || key <= last || !decodeQueued(&d, &p) || !d.end() {
			derr = corrupt(Record{Kind: KindQueued, Key: k, Value: v}, "malformed spooled request")
			return false
		}
		if tag, ok := sp.tags[key]; ok {
			p.Tag = tag
			delete(sp.tags, key)
		}
		es = append(es, tracked.Entry[Pending]{Key: key, Value: p})
		bytes += int64(len(k) + len(v))
		last = key
		return len(es) < want
	})
	if err == nil {
		err = derr
	}
	if err == nil && len(es) == 0 {
		err = fmt.Errorf("%w: %d spooled requests missing from the store", ErrCorruptState, sp.n)
	}
	if err != nil {
		return fmt.Errorf("state: reading the spool from the store: %w", err)
	}
	s.queue.AppendStored(es)
	sp.n -= len(es)
	sp.bytes -= bytes
	sp.from = last + 1
	if sp.n == 0 || sp.bytes < 0 {
		sp.n, sp.bytes = 0, 0
	}
	return nil
}

// LoadStoreSpool is LoadStore with a spool (see SetSpool): only the first
// sp.Window queued requests are read into memory, the others stay in the
// store (their records are counted, not decoded: a damaged one is found
// when it comes back into memory, and Commit then fails).
func LoadStoreSpool(st Store, sp Spool) (*MqttState, error) {
	return loadStoreSpool(st, sp)
}

// eachSpooled calls yield with the spooled records, those in the store
// and those pending, in order (for Save and a snapshot).
func (s *MqttState) eachSpooled(yield func(Record) error) error {
	sp := &s.spool
	if sp.n == 0 {
		return nil
	}
	var yerr error
	if s.trk != nil && sp.n > len(sp.pending) {
		var stop []byte
		if len(sp.pending) > 0 {
			stop = sp.buf[sp.pending[0].start:sp.pending[0].keyEnd]
		}
		err := s.trk.store.Scan(KindQueued, appendQueueKey(nil, sp.from), func(k, v []byte) bool {
			if stop != nil && string(k) >= string(stop) {
				return false
			}
			yerr = yield(Record{Kind: KindQueued, Key: k, Value: v})
			return yerr == nil
		})
		if err != nil {
			return fmt.Errorf("state: reading the spool from the store: %w", err)
		}
		if yerr != nil {
			return yerr
		}
	}
	for _, r := range sp.pending {
		if err := yield(Record{Kind: KindQueued, Key: sp.buf[r.start:r.keyEnd], Value: sp.buf[r.keyEnd:r.end]}); err != nil {
			return err
		}
	}
	return nil
}

// expiry applies the Message Expiry policy to the publish p at the head
// of the queue at now: expired reports that it is due (drop it); else,
// when it has a deadline, its packet gets what remains of the interval
// (whole seconds, rounded up).
func expiry(p Pending, pub *packets.Publish, now time.Time) (expired bool) {
	if p.Expires.IsZero() || now.IsZero() {
		return false
	}
	left := p.Expires.Sub(now)
	if left <= 0 {
		return true
	}
	secs := uint32(min((left+time.Second-1)/time.Second, 1<<32-1))
	props := packets.Properties{}
	if pub.Properties != nil {
		props = *pub.Properties
	}
	props.MessageExpiry = &secs
	pub.Properties = &props
	return false
}
