// Package tracked holds the containers of a session that remember what
// changed: a Map and a Queue whose every change records the key it
// touched, while tracking is on, so that the session's store can be kept
// in step without a hand-written note beside each change. Their contents
// are reachable only through methods, so no change can bypass the record.
//
// A value the containers hold may point to data the session changes in
// place (a *Outgoing, a packet): take it with Map.Modify or
// Queue.ModifyEach for such a change, never with Get.
package tracked

import (
	"iter"
	"maps"
)

// Map is a map whose changes are recorded while tracking is on. The zero
// Map is empty, with tracking off.
type Map[K comparable, V any] struct {
	m map[K]V
	// dirty holds the keys changed since the last ResetChanges, each
	// with whether it existed before its first change (so in the store,
	// unless it changed since); nil while tracking is off.
	dirty map[K]bool
}

// Get returns the value of k, for reading.
func (t *Map[K, V]) Get(k K) (V, bool) {
	v, ok := t.m[k]
	return v, ok
}

// Has reports whether k is present.
func (t *Map[K, V]) Has(k K) bool {
	_, ok := t.m[k]
	return ok
}

// Len returns the number of entries.
func (t *Map[K, V]) Len() int { return len(t.m) }

// All iterates over the entries, in no order, for reading. Set, Delete and
// Modify may be called during the iteration.
func (t *Map[K, V]) All() iter.Seq2[K, V] { return maps.All(t.m) }

// Keys iterates over the keys, in no order.
func (t *Map[K, V]) Keys() iter.Seq[K] { return maps.Keys(t.m) }

// Clone returns a copy of the entries as a plain map.
func (t *Map[K, V]) Clone() map[K]V { return maps.Clone(t.m) }

// Set creates or replaces the entry of k.
func (t *Map[K, V]) Set(k K, v V) {
	t.note(k)
	if t.m == nil {
		t.m = make(map[K]V)
	}
	t.m[k] = v
}

// Delete removes the entry of k, if any, and reports whether there was
// one.
func (t *Map[K, V]) Delete(k K) bool {
	if _, ok := t.m[k]; !ok {
		return false
	}
	t.note(k)
	delete(t.m, k)
	return true
}

// Modify returns the value of k for a change in place of what it points
// to, and records the change.
func (t *Map[K, V]) Modify(k K) (V, bool) {
	v, ok := t.m[k]
	if ok {
		t.note(k)
	}
	return v, ok
}

// Clear removes every entry.
func (t *Map[K, V]) Clear() {
	if t.dirty != nil {
		for k := range t.m {
			t.note(k)
		}
	}
	clear(t.m)
}

func (t *Map[K, V]) note(k K) {
	if t.dirty == nil {
		return
	}
	if _, seen := t.dirty[k]; !seen {
		_, had := t.m[k]
		t.dirty[k] = had
	}
}

// Track turns recording on (forgetting what was recorded) or off.
func (t *Map[K, V]) Track(on bool) {
	if !on {
		t.dirty = nil
		return
	}
	if t.dirty == nil {
		t.dirty = make(map[K]bool)
	}
	clear(t.dirty)
}

// Changed reports whether a change was recorded since the last
// ResetChanges.
func (t *Map[K, V]) Changed() bool { return len(t.dirty) > 0 }

// Changes iterates over the keys changed since the last ResetChanges,
// each with whether it existed before (had); the entry's present value,
// if any, is Get(k).
func (t *Map[K, V]) Changes() iter.Seq2[K, bool] { return maps.All(t.dirty) }

// ResetChanges forgets what was recorded (after it was committed).
func (t *Map[K, V]) ResetChanges() { clear(t.dirty) }

// Queue is a first-in first-out queue whose entries each have a key, their
// position: keys increase from the front to the back, new entries at the
// back take the next key after the last one given, entries put back at
// the front the keys before the first one. Its changes (entries added,
// removed, modified) are recorded by key while tracking is on. The zero
// Queue is empty, with tracking off.
type Queue[V any] struct {
	items []Entry[V]
	head  int // items[:head] were removed
	// Keys given so far are in [front, back).
	front, back int64
	dirty       map[int64]Change[V]
}

// Entry is a value in a queue with its key.
type Entry[V any] struct {
	Key   int64
	Value V
}

// Change is what became of an entry since the last ResetChanges.
type Change[V any] struct {
	Had     bool // the entry existed before its first change
	Present bool // it exists now, with Value
	Value   V
}

// Len returns the number of entries.
func (q *Queue[V]) Len() int { return len(q.items) - q.head }

// Front returns the first entry's value.
func (q *Queue[V]) Front() (V, bool) {
	if q.Len() == 0 {
		var zero V
		return zero, false
	}
	return q.items[q.head].Value, true
}

// All iterates over the entries from front to back, for reading.
func (q *Queue[V]) All() iter.Seq2[int64, V] {
	return func(yield func(int64, V) bool) {
		for _, e := range q.items[q.head:] {
			if !yield(e.Key, e.Value) {
				return
			}
		}
	}
}

// Cap returns the capacity of the queue's storage (for tests of its
// memory use).
func (q *Queue[V]) Cap() int { return cap(q.items) }

// PushBack adds v at the back.
func (q *Queue[V]) PushBack(v V) {
	// Reclaim the removed prefix once it is at least half the slice, so
	// a queue that never drains completely does not grow without bound
	// (amortised O(1): each move is paid for by as many pops).
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	e := Entry[V]{Key: q.back, Value: v}
	q.back++
	q.note(e, false, true)
	q.items = append(q.items, e)
}

// PushFront puts vs back at the front, in order (vs[0] first).
func (q *Queue[V]) PushFront(vs []V) {
	if len(vs) == 0 {
		return
	}
	q.front -= int64(len(vs))
	items := make([]Entry[V], 0, len(vs)+q.Len())
	for i, v := range vs {
		e := Entry[V]{Key: q.front + int64(i), Value: v}
		q.note(e, false, true)
		items = append(items, e)
	}
	q.items, q.head = append(items, q.items[q.head:]...), 0
}

// PopFront removes the first entry and returns its value.
func (q *Queue[V]) PopFront() (V, bool) {
	if q.Len() == 0 {
		var zero V
		return zero, false
	}
	e := q.items[q.head]
	q.note(e, true, false)
	q.items[q.head] = Entry[V]{}
	q.head++
	return e.Value, true
}

// DeleteFunc removes the entries for which del returns true and returns
// their values, front first; the others keep their order and keys.
func (q *Queue[V]) DeleteFunc(del func(V) bool) []V {
	var out []V
	items := q.items[q.head:]
	kept := items[:0]
	for _, e := range items {
		if del(e.Value) {
			q.note(e, true, false)
			out = append(out, e.Value)
			continue
		}
		kept = append(kept, e)
	}
	clear(items[len(kept):])
	q.items = q.items[:q.head+len(kept)]
	return out
}

// ModifyEach calls fn with every value, front to back; fn changes what
// the value points to and reports whether it did, which is recorded.
func (q *Queue[V]) ModifyEach(fn func(V) bool) {
	for _, e := range q.items[q.head:] {
		if fn(e.Value) {
			q.note(e, true, true)
		}
	}
}

// Restore fills an empty queue with entries whose keys increase, e.g.
// read back from a store. Nothing is recorded.
func (q *Queue[V]) Restore(es []Entry[V]) {
	q.items, q.head = es, 0
	if n := len(es); n > 0 {
		q.front, q.back = es[0].Key, es[n-1].Key+1
	}
}

// note records a change of e: had says whether e was in the queue before
// it, present whether it is after it. The first change since the last
// ResetChanges decides Had.
func (q *Queue[V]) note(e Entry[V], had, present bool) {
	if q.dirty == nil {
		return
	}
	c, seen := q.dirty[e.Key]
	if !seen {
		c.Had = had
	}
	c.Present, c.Value = present, e.Value
	q.dirty[e.Key] = c
}

// Track turns recording on (forgetting what was recorded) or off.
func (q *Queue[V]) Track(on bool) {
	if !on {
		q.dirty = nil
		return
	}
	if q.dirty == nil {
		q.dirty = make(map[int64]Change[V])
	}
	clear(q.dirty)
}

// Changed reports whether a change was recorded since the last
// ResetChanges.
func (q *Queue[V]) Changed() bool { return len(q.dirty) > 0 }

// Changes iterates over the entries changed since the last ResetChanges,
// by key.
func (q *Queue[V]) Changes() iter.Seq2[int64, Change[V]] { return maps.All(q.dirty) }

// ResetChanges forgets what was recorded (after it was committed).
func (q *Queue[V]) ResetChanges() { clear(q.dirty) }

// Next returns the key the next PushBack takes.
func (q *Queue[V]) Next() int64 { return q.back }

// Reserve takes the next key at the back without adding an entry: the
// entry lives elsewhere (in a store only) and may come back with
// AppendStored. Nothing is recorded.
func (q *Queue[V]) Reserve() int64 {
	k := q.back
	q.back++
	return k
}

// SetBounds says that keys from first to next-1 are taken by entries that
// live elsewhere (after Restore of a queue whose later entries are in a
// store only): PushBack takes next or above, PushFront keys below first.
func (q *Queue[V]) SetBounds(first, next int64) {
	q.front = min(q.front, first)
	q.back = max(q.back, next)
}

// AppendStored appends entries read back from a store at the back, in
// order; their keys were given before (Reserve) and are above those in
// the queue. Nothing is recorded: the store holds them already.
func (q *Queue[V]) AppendStored(es []Entry[V]) {
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, es...)
}

// Change returns what became of the entry of key since the last
// ResetChanges (zero if nothing).
func (q *Queue[V]) Change(key int64) Change[V] { return q.dirty[key] }
