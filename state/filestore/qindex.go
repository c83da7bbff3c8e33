package filestore

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/mqttloop/mqttloop/state"
)

// The queued records (state.KindQueued) can be many: a session's offline
// spool (state.Spool) keeps its backlog in the store only. Their values
// are not held in memory: qindex says where each one is in the file, and
// Scan reads them from there. 20 bytes a record, in key order (their keys
// are 8-byte queue positions, mostly appended at the back and removed at
// the front).

// qent is one queued record: its key and where its value is in the file.
type qent struct {
	key uint64 // the 8 key bytes, big-endian
	off int64  // the value's offset in the file
	n   uint32 // the value's length
	// dead: deleted, not yet swept out of ents.
	dead bool
}

// qindex holds the queued records in key order.
type qindex struct {
	ents []qent
	head int // ents[:head] are gone
	dead int // dead entries in ents[head:]
}

func queuedKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: a queued record's key of %d bytes (a queue position has 8)", state.ErrCorruptState, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

func (q *qindex) reset() { *q = qindex{ents: q.ents[:0]} }

// len returns the number of records.
func (q *qindex) len() int { return len(q.ents) - q.head - q.dead }

// search returns the index of the first entry (dead or alive) whose key
// is at least key.
func (q *qindex) search(key uint64) int {
	live := q.ents[q.head:]
	return q.head + sort.Search(len(live), func(i int) bool { return live[i].key >= key })
}

// put creates or replaces a record; it returns the length of the value it
// replaced, if any.
func (q *qindex) put(key uint64, off int64, n uint32) (old uint32, had bool) {
	e := qent{key: key, off: off, n: n}
	if l := len(q.ents); l == q.head || q.ents[l-1].key < key {
		q.ents = append(q.ents, e)
		return 0, false
	}
	i := q.search(key)
	if i < len(q.ents) && q.ents[i].key == key {
		old, had = q.ents[i].n, !q.ents[i].dead
		if !had {
			q.dead--
		}
		q.ents[i] = e
		return old, had
	}
	if i == q.head && q.head > 0 {
		// Before the first: in the room the front left.
		q.head--
		q.ents[q.head] = e
		return 0, false
	}
	q.ents = append(q.ents, qent{})
	copy(q.ents[i+1:], q.ents[i:])
	q.ents[i] = e
	return 0, false
}

// del deletes a record; it returns the length of its value, if it was
// there.
func (q *qindex) del(key uint64) (old uint32, had bool) {
	i := q.search(key)
	if i == len(q.ents) || q.ents[i].key != key || q.ents[i].dead {
		return 0, false
	}
	old = q.ents[i].n
	q.ents[i].dead = true
	q.dead++
	for q.head < len(q.ents) && q.ents[q.head].dead {
		q.head++
		q.dead--
	}
	switch {
	case q.head == len(q.ents):
		q.ents, q.head, q.dead = q.ents[:0], 0, 0
	case q.dead > 64 && q.dead > q.len():
		q.sweep()
	case q.head > 1024 && q.head > len(q.ents)/2:
		n := copy(q.ents, q.ents[q.head:])
		q.ents, q.head = q.ents[:n], 0
	}
	return old, true
}

// sweep removes the dead entries.
func (q *qindex) sweep() {
	kept := q.ents[:0]
	for _, e := range q.ents[q.head:] {
		if !e.dead {
			kept = append(kept, e)
		}
	}
	q.ents, q.head, q.dead = kept, 0, 0
}

// each calls fn with the records whose key is at least from, in order,
// until fn returns false.
func (q *qindex) each(from []byte, fn func(qent) bool) {
	i := q.head
	if from != nil {
		var k [8]byte
		copy(k[:], from) // shorter: zero-padded, which sorts after it; longer: cut
		start := binary.BigEndian.Uint64(k[:])
		if len(from) > 8 {
			start++ // a longer key sorts after its first 8 bytes
			if start == 0 {
				return
			}
		}
		i = q.search(start)
	}
	for ; i < len(q.ents); i++ {
		if e := q.ents[i]; !e.dead && !fn(e) {
			return
		}
	}
}

// valueReader reads values of queued records from the file, a chunk at a
// time: the records of a commit lie next to each other.
type valueReader struct {
	r     io.ReaderAt
	at    int64
	chunk []byte
}

const readChunk = 64 << 10

// read returns the n bytes at off, valid until the next call.
func (v *valueReader) read(off int64, n uint32) ([]byte, error) {
	if off >= v.at && off+int64(n) <= v.at+int64(len(v.chunk)) {
		return v.chunk[off-v.at : off-v.at+int64(n)], nil
	}
	size := max(readChunk, int(n))
	if cap(v.chunk) < size {
		v.chunk = make([]byte, size)
	}
	v.chunk = v.chunk[:size]
	got, err := v.r.ReadAt(v.chunk, off)
	if got < int(n) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		v.chunk = v.chunk[:0]
		return nil, fmt.Errorf("reading a queued record at byte %d: %w", off, err)
	}
	v.at, v.chunk = off, v.chunk[:got]
	return v.chunk[:n], nil
}

// forget drops the chunk read (the file changed under it).
func (v *valueReader) forget() { v.chunk = v.chunk[:0] }
