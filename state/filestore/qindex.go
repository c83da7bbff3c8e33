package filestore

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/mqttloop/mqttloop/state"
)

// The queued records (state.KindQueued) can be many: a session's offline
// spool (state.Spool) keeps its backlog in the store only. Neither their
// values nor an entry per record are held in memory: qindex holds runs,
// each a range of consecutive keys whose put operations lie one after the
// other in the file, at most maxRun of them (a commit's spooled requests,
// a chunk of a snapshot), and Scan reads them from there. A spool of a
// million requests is a few thousand runs of 32 bytes.

// maxRun caps the records of a run, so that reaching one in the middle
// reads little.
const maxRun = 256

// qrun is a run: the records of keys first to first+n-1, whose put
// operations start at off in the file, one after the other; end is the
// offset just after the last one (-1: unknown, the run cannot grow).
type qrun struct {
	first    uint64
	off, end int64
	n        int32
}

// qindex holds the queued records as runs, in key order, disjoint.
type qindex struct {
	runs  []qrun
	count int
}

func queuedKey(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: a queued record's key of %d bytes (a queue position has 8)", state.ErrCorruptState, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

func (q *qindex) reset() { *q = qindex{runs: q.runs[:0]} }

// len returns the number of records.
func (q *qindex) len() int { return q.count }

// find returns the index of the first run that ends after key (it holds
// key if its first is at most key).
func (q *qindex) find(key uint64) int {
	return sort.Search(len(q.runs), func(i int) bool { return q.runs[i].first+uint64(q.runs[i].n) > key })
}

// qop is a queued put operation read back from the file.
type qop struct {
	key   uint64
	size  int64 // the whole operation
	value []byte
}

// opHeadMax is the longest head of a queued put: code, kind, key length,
// key, value length. A frame's CRC follows its last operation, so 16 bytes
// from an operation's start are always in the file.
const opHeadMax = 16

// readOp reads the queued put at off; with value, its value too (valid
// until the next read).
func readOp(vr *valueReader, off int64, value bool) (qop, error) {
	h, err := vr.read(off, opHeadMax)
	if err != nil {
		return qop{}, err
	}
	if h[0] != opPut || state.Kind(h[1]) != state.KindQueued || h[2] != 8 {
		return qop{}, fmt.Errorf("%w: no queued record at byte %d", state.ErrCorruptState, off)
	}
	o := qop{key: binary.BigEndian.Uint64(h[3:11])}
	n, w := binary.Uvarint(h[11:])
	if w <= 0 || n > maxFrame {
		return qop{}, fmt.Errorf("%w: bad value length at byte %d", state.ErrCorruptState, off)
	}
	head := int64(11 + w)
	o.size = head + int64(n)
	if value {
		if o.value, err = vr.read(off+head, uint32(n)); err != nil {
			return qop{}, err
		}
	}
	return o, nil
}

// put records the queued put of key at off (size bytes), replacing the
// record of key if there is one; it returns the size of the operation it
// replaced.
func (q *qindex) put(vr *valueReader, key uint64, off, size int64) (old int64, had bool, err error) {
	if old, had, err = q.del(vr, key); err != nil {
		return 0, false, err
	}
	q.count++
	i := q.find(key)
	// Right after the run before it, in the file too: it grows.
	if i > 0 {
		if r := &q.runs[i-1]; r.first+uint64(r.n) == key && r.end == off && r.n < maxRun {
			r.n++
			r.end = off + size
			return old, had, nil
		}
	}
	q.runs = slices.Insert(q.runs, i, qrun{first: key, off: off, end: off + size, n: 1})
	return old, had, nil
}

// del deletes the record of key; it returns the size of its operation.
func (q *qindex) del(vr *valueReader, key uint64) (size int64, had bool, err error) {
	i := q.find(key)
	if i == len(q.runs) || q.runs[i].first > key {
		return 0, false, nil
	}
	r := q.runs[i]
	// Walk the run to the record.
	off := r.off
	var o qop
	for k := r.first; ; k++ {
		if o, err = readOp(vr, off, false); err != nil {
			return 0, false, err
		}
		if o.key != k {
			return 0, false, fmt.Errorf("%w: queued record %d where %d should be (byte %d)", state.ErrCorruptState, o.key, k, off)
		}
		if k == key {
			break
		}
		off += o.size
	}
	q.count--
	switch {
	case r.n == 1:
		q.runs = slices.Delete(q.runs, i, i+1)
	case key == r.first:
		q.runs[i] = qrun{first: key + 1, off: off + o.size, end: r.end, n: r.n - 1}
	case key == r.first+uint64(r.n)-1:
		q.runs[i].n--
		q.runs[i].end = off
	default:
		left := int32(key - r.first)
		q.runs[i].n, q.runs[i].end = left, off
		q.runs = slices.Insert(q.runs, i+1, qrun{first: key + 1, off: off + o.size, end: r.end, n: r.n - left - 1})
	}
	return o.size, true, nil
}

// each calls fn with the records whose key is at least from (as bytes),
// in order, until fn returns false; the value is valid during the call.
func (q *qindex) each(vr *valueReader, from []byte, fn func(key uint64, value []byte) bool) error {
	var start uint64
	if from != nil {
		var k [8]byte
		copy(k[:], from) // shorter: zero-padded, which sorts after it; longer: cut
		start = binary.BigEndian.Uint64(k[:])
		if len(from) > 8 {
			start++ // a longer key sorts after its first 8 bytes
			if start == 0 {
				return nil
			}
		}
	}
	for i := q.find(start); i < len(q.runs); i++ {
		r := q.runs[i]
		off := r.off
		for k := r.first; k < r.first+uint64(r.n); k++ {
			o, err := readOp(vr, off, k >= start)
			if err != nil {
				return err
			}
			if o.key != k {
				return fmt.Errorf("%w: queued record %d where %d should be (byte %d)", state.ErrCorruptState, o.key, k, off)
			}
			if k >= start && !fn(k, o.value) {
				return nil
			}
			off += o.size
		}
	}
	return nil
}

// builder makes runs of records written in key order (a snapshot).
type runBuilder struct{ runs []qrun }

func (b *runBuilder) add(key uint64, off, size int64) {
	if l := len(b.runs); l > 0 {
		if r := &b.runs[l-1]; r.first+uint64(r.n) == key && r.end == off && r.n < maxRun {
			r.n++
			r.end = off + size
			return
		}
	}
	b.runs = append(b.runs, qrun{first: key, off: off, end: off + size, n: 1})
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
