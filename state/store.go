package state

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/mqttloop/mqttloop/state/internal/tracked"
)

// Errors of AttachStore and the stores.
var (
	// ErrStoreMismatch: the store holds the session of another Identity
	// (another broker or client id). A store belongs to one identity.
	ErrStoreMismatch = errors.New("the store holds another session")
	// ErrStoreClosed: the store was closed.
	ErrStoreClosed = errors.New("store closed")
)

// Store keeps a session durable while it changes, so that a process that
// is killed rather than shut down resumes where it was.
//
// A Store holds records (Record): bytes keyed by Kind and key, which this
// package encodes, decodes and checks. It supplies them (Scan) and
// applies changes to them (Apply); the session does the rest. LoadStore
// rebuilds the session a store holds and attaches it; AttachStore makes
// another session write through a store, starting with a full snapshot.
// Each Commit of the session then hands the store the changes since the
// previous one in one Apply (one transaction per event-loop iteration,
// not one per message). A store belongs to one Identity.
//
// Scan reads the records of one kind from a key on, in key order, and
// stops when told: a session may read part of a kind and the rest later
// (the offline queue's records are keyed by position, in order).
type Store interface {
	// Scan calls yield with each record of kind k whose key is at least
	// from (every record of k when from is nil), in increasing byte
	// order of the keys, until yield returns false or no record is
	// left. The key and value are valid only during the call to yield,
	// which must not call the store. A store that finds itself damaged
	// returns an error wrapping ErrCorruptState.
	Scan(k Kind, from []byte, yield func(key, value []byte) bool) error
	// Apply applies a batch atomically: all of it or, with an error,
	// none of it. The batch and its bytes are valid only during the
	// call. A store that cannot tell which (a disk that failed in the
	// middle of a commit) refuses every later batch: what it holds is
	// then known by loading it again.
	Apply(b *Batch) error
	// Close releases the store.
	Close() error
}

// Batch is what a Commit hands the store: the records to write and those
// to delete. A (kind, key) appears at most once in a batch.
type Batch struct {
	// Reset: delete every record first; Puts then hold a full snapshot
	// of the session (AttachStore).
	Reset bool
	// Puts are the records to create or overwrite.
	Puts []Record
	// Deletes are the records to delete (their Value is nil); some may
	// not exist.
	Deletes []Record
}

// tracker writes the session's changes to the store. The tracked
// containers of the session record which entries changed; the meta
// records (identity and counters) are compared with what was committed.
type tracker struct {
	store Store
	// committed: the meta values the store holds; none when fresh (an
	// empty store), which the first batch writes.
	committed meta
	fresh     bool

	batch Batch
	arena []byte
}

// meta is what the meta records hold.
type meta struct {
	identity Identity
	nextID   uint16
	seq      uint64
}

func (s *MqttState) meta() meta { return meta{s.identity, s.nextID, s.seq} }

// track turns the recording of changes in every tracked container on or
// off.
func (s *MqttState) track(on bool) {
	s.outgoing.Track(on)
	s.subscribing.Track(on)
	s.unsubscribing.Track(on)
	s.incomingQoS2.Track(on)
	s.unackedQoS1.Track(on)
	s.subscriptions.Track(on)
	s.queue.Track(on)
}

// changed reports whether anything changed since the last commit.
func (s *MqttState) changed() bool {
	return s.meta() != s.trk.committed ||
		s.outgoing.Changed() || s.subscribing.Changed() || s.unsubscribing.Changed() ||
		s.incomingQoS2.Changed() || s.unackedQoS1.Changed() || s.subscriptions.Changed() ||
		s.queue.Changed() || len(s.spool.pending) > 0
}

// committedChanges forgets the recorded changes once they are in the store.
func (s *MqttState) committedChanges() {
	s.outgoing.ResetChanges()
	s.subscribing.ResetChanges()
	s.unsubscribing.ResetChanges()
	s.incomingQoS2.ResetChanges()
	s.unackedQoS1.ResetChanges()
	s.subscriptions.ResetChanges()
	s.queue.ResetChanges()
	s.spool.committed()
	s.trk.committed = s.meta()
	s.trk.fresh = false
	s.trk.reset()
}

func (t *tracker) reset() {
	clear(t.batch.Puts)
	clear(t.batch.Deletes)
	t.batch = Batch{Puts: t.batch.Puts[:0], Deletes: t.batch.Deletes[:0]}
	t.arena = t.arena[:0]
}

// put appends a record whose key and value the caller appended to the
// arena from start, the key ending at keyEnd.
func (t *tracker) put(k Kind, start, keyEnd int) {
	t.batch.Puts = append(t.batch.Puts, Record{Kind: k, Key: t.arena[start:keyEnd:keyEnd], Value: t.arena[keyEnd:len(t.arena):len(t.arena)]})
}

// del appends a deletion whose key the caller appended to the arena from
// start.
func (t *tracker) del(k Kind, start int) {
	t.batch.Deletes = append(t.batch.Deletes, Record{Kind: k, Key: t.arena[start:len(t.arena):len(t.arena)]})
}

// changes appends the records of a tracked map that changed: the present
// ones to put, the others that were in the store to delete.
func changes[K comparable, V any](t *tracker, m *tracked.Map[K, V], k Kind, key func([]byte, K) []byte, val func([]byte, V) []byte) {
	for id, had := range m.Changes() {
		st := len(t.arena)
		t.arena = key(t.arena, id)
		ke := len(t.arena)
		if v, ok := m.Get(id); ok {
			t.arena = val(t.arena, v)
			t.put(k, st, ke)
		} else if had {
			t.del(k, st)
		} else {
			t.arena = t.arena[:st]
		}
	}
}

// build turns the recorded changes into a batch. Slices into the arena
// stay valid when it grows (the old array is not written again).
func (t *tracker) build(s *MqttState) *Batch {
	now := s.meta()
	if t.fresh || now.identity != t.committed.identity {
		st := len(t.arena)
		t.arena = append(t.arena, identityKey...)
		ke := len(t.arena)
		t.arena = s.appendIdentity(t.arena)
		t.put(KindMeta, st, ke)
	}
	if t.fresh || now.nextID != t.committed.nextID || now.seq != t.committed.seq {
		st := len(t.arena)
		t.arena = append(t.arena, countersKey...)
		ke := len(t.arena)
		t.arena = s.appendCounters(t.arena)
		t.put(KindMeta, st, ke)
	}
	changes(t, &s.outgoing, KindInFlight, appendIDKey, appendInFlight)
	changes(t, &s.subscribing, KindSubscribing, appendIDKey, appendSubscribing)
	changes(t, &s.unsubscribing, KindUnsubscribing, appendIDKey, appendUnsubscribing)
	changes(t, &s.incomingQoS2, KindIncomingQoS2, appendIDKey, appendIncomingQoS2)
	changes(t, &s.unackedQoS1, KindUnackedQoS1, appendIDKey, func(b []byte, _ struct{}) []byte { return b })
	changes(t, &s.subscriptions, KindSubscription, func(b []byte, f string) []byte { return append(b, f...) }, appendSubscription)
	// In key order: a store may keep consecutive records together.
	for _, key := range slices.Sorted(maps.Keys(maps.Collect(s.queue.Changes()))) {
		c := s.queue.Change(key)
		if !c.Present && !c.Had {
			continue
		}
		st := len(t.arena)
		t.arena = appendQueueKey(t.arena, key)
		ke := len(t.arena)
		if c.Present {
			t.arena = appendQueued(t.arena, c.Value)
			t.put(KindQueued, st, ke)
		} else {
			t.del(KindQueued, st)
		}
	}
	t.spoolPuts(&s.spool)
	return &t.batch
}

// snapshot makes a batch that replaces the store's content with the whole
// session.
func (t *tracker) snapshot(s *MqttState) (*Batch, error) {
	t.reset()
	var buf []byte
	err := s.eachRecord(buf, func(r Record) error {
		st := len(t.arena)
		t.arena = append(t.arena, r.Key...)
		ke := len(t.arena)
		t.arena = append(t.arena, r.Value...)
		t.put(r.Kind, st, ke)
		return nil
	})
	t.batch.Reset = true
	return &t.batch, err
}

// LoadStore rebuilds the session st holds and attaches it to st: from now
// on the session writes through st (Commit), as after AttachStore, but
// nothing is written now, since st holds it already. An empty store gives
// an empty session (its Identity is the zero Identity).
//
// The records are checked as Load checks a saved file: damaged ones are
// an error wrapping ErrCorruptState, and no session is returned. The
// session has nil tags (except Resubscribe), a zero Config (set it with
// SetConfig) and DefaultLimits; incoming QoS 2 messages that awaited a
// manual ack are taken as undelivered (see Load).
func LoadStore(st Store) (*MqttState, error) { return loadStoreSpool(st, Spool{}) }

func loadStoreSpool(st Store, sp Spool) (*MqttState, error) {
	var rb rebuilder
	var spooled spool
	last := int64(0)
	for _, k := range Kinds() {
		var err error
		inMemory := 0
		serr := st.Scan(k, nil, func(key, value []byte) bool {
			if k == KindQueued && sp.Window > 0 && inMemory >= sp.Window {
				// Beyond the window: counted, left in the store.
				pos, _, ok := decodeQueuedKey(key)
				if !ok || (spooled.n > 0 && pos <= last) {
					err = corrupt(Record{Kind: k, Key: key}, "key is not a queue position in order")
					return false
				}
				if spooled.n == 0 {
					spooled.from = pos
				}
				spooled.n++
				spooled.bytes += int64(len(key) + len(value))
				last = pos
				rb.records++
				return true
			}
			if k == KindQueued {
				inMemory++
			}
			err = rb.add(Record{Kind: k, Key: key, Value: value})
			return err == nil
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return nil, fmt.Errorf("state: loading the session from the store: %w", err)
		}
	}
	s, err := rb.session()
	if err != nil {
		return nil, fmt.Errorf("state: loading the session from the store: %w", err)
	}
	fresh := s == nil
	if fresh {
		s = New(Config{})
	}
	if spooled.n > 0 {
		s.queue.SetBounds(spooled.from, last+1)
	}
	spooled.cfg = sp
	s.spool = spooled
	s.trk = &tracker{store: st}
	s.track(true)
	s.committedChanges()
	s.trk.fresh = fresh
	return s, nil
}

// storedIdentity reads the identity record of st; ok is false when there
// is none (an empty store).
func storedIdentity(st Store) (id Identity, ok bool, err error) {
	var derr error
	err = st.Scan(KindMeta, []byte(identityKey), func(key, value []byte) bool {
		if string(key) == identityKey {
			id, derr = decodeIdentity(value)
			ok = derr == nil
		}
		return false
	})
	if err == nil {
		err = derr
	}
	return id, ok, err
}

// AttachStore makes the session write through st from now on. It first
// makes st hold exactly this session: a full snapshot in one Apply,
// replacing what st held. It refuses, with an error wrapping
// ErrStoreMismatch, a store that holds the session of another Identity
// (set the identity with SetIdentity first). To resume the session a store
// holds, use LoadStore.
//
// AttachStore(nil) detaches the store; changes not committed are not
// written. Attaching replaces any store attached before.
func (s *MqttState) AttachStore(st Store) error {
	if st == nil {
		if s.spool.n > 0 {
			return fmt.Errorf("state: detaching the store: %d queued requests are spooled in it", s.spool.n)
		}
		s.trk = nil
		s.track(false)
		return nil
	}
	id, ok, err := storedIdentity(st)
	if err != nil {
		return fmt.Errorf("state: reading the store's identity: %w", err)
	}
	if ok && id != s.identity {
		return fmt.Errorf("%w: it belongs to client id %q on %q, this session to client id %q on %q",
			ErrStoreMismatch, id.ClientID, id.Server, s.identity.ClientID, s.identity.Server)
	}
	t := &tracker{store: st}
	b, err := t.snapshot(s)
	if err != nil {
		return err
	}
	if err := st.Apply(b); err != nil {
		return fmt.Errorf("state: writing the session to the store: %w", err)
	}
	s.trk = t
	s.track(true)
	s.committedChanges() // the snapshot holds the spooled records too
	return nil
}

// Store returns the attached store, or nil.
func (s *MqttState) Store() Store {
	if s.trk == nil {
		return nil
	}
	return s.trk.store
}

// Commit hands the attached store every change since the previous Commit
// in one Apply. Without a store, or with nothing changed, it does nothing.
//
// When the store's Apply fails nothing of the batch was written and the
// changes stay pending: the next Commit retries them. The session in
// memory is then ahead of the store; an event loop should end the run
// rather than go on without durability.
//
// Ordering: an event loop calls Commit once per iteration, after the
// iteration's transitions and BEFORE it flushes the packets they produced
// to the network. What goes on the wire must already be durable: an
// incoming QoS 2 id before its PUBREC (or a process killed after PUBREC
// would deliver the broker's resend again), its release before its PUBCOMP
// (or a new message reusing the id would be taken for a duplicate), a
// publish's packet id and stage before its PUBLISH or PUBREL (or a
// restarted process would send it again as a new message). A write buffer
// that fills up mid-iteration must not flush before Commit either.
//
// What is durable after Commit returns: every request accepted by Enqueue
// (QoS 0 publishes included, until sent), every publish in flight with its
// packet id, stage and send order, every unanswered (un)subscribe, the
// incoming QoS 2 ids and whether PUBREC was sent, the QoS 1 ids awaiting a
// manual ack, the active subscriptions with their options, the identity
// and the packet id and send counters.
func (s *MqttState) Commit() error {
	if err := s.commit(); err != nil {
		return err
	}
	return s.refill()
}

func (s *MqttState) commit() error {
	t := s.trk
	if t == nil || !s.changed() {
		return nil
	}
	b := t.build(s)
	if len(b.Puts) == 0 && len(b.Deletes) == 0 {
		s.committedChanges()
		return nil
	}
	if err := t.store.Apply(b); err != nil {
		// Keep the changes for the next Commit; the batch is rebuilt.
		t.reset()
		return fmt.Errorf("state: committing to the store: %w", err)
	}
	s.committedChanges()
	return nil
}

// MemoryStore is a Store in memory: the reference implementation, and
// useful in tests (a session rebuilt from it can be compared with the live
// one). It survives a new EventLoop in the same process, not a killed
// process. It is safe for concurrent use. The zero value is ready to use.
type MemoryStore struct {
	mu      sync.Mutex
	closed  bool
	recs    map[Kind]map[string][]byte
	applies int
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Scan calls yield with the records of kind k from key from on, in key
// order. yield must not call the store.
func (m *MemoryStore) Scan(k Kind, from []byte, yield func(key, value []byte) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrStoreClosed
	}
	kr := m.recs[k]
	for _, key := range slices.Sorted(maps.Keys(kr)) {
		if key < string(from) {
			continue
		}
		if !yield([]byte(key), kr[key]) {
			break
		}
	}
	return nil
}

// Apply applies a batch, copying its bytes.
func (m *MemoryStore) Apply(b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrStoreClosed
	}
	if b.Reset || m.recs == nil {
		m.recs = make(map[Kind]map[string][]byte)
	}
	for _, r := range b.Deletes {
		delete(m.recs[r.Kind], string(r.Key))
	}
	for _, r := range b.Puts {
		kr := m.recs[r.Kind]
		if kr == nil {
			kr = make(map[string][]byte)
			m.recs[r.Kind] = kr
		}
		kr[string(r.Key)] = slices.Clone(r.Value)
	}
	m.applies++
	return nil
}

// Records returns the number of records the store holds.
func (m *MemoryStore) Records() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, kr := range m.recs {
		n += len(kr)
	}
	return n
}

// Applies returns the number of batches applied so far.
func (m *MemoryStore) Applies() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applies
}

// Close closes the store; it keeps nothing afterwards.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed, m.recs = true, nil
	return nil
}
