package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mqttloop/mqttloop/state"
)

// ErrLocked: another process (or another Store in this one) has the file
// open.
var ErrLocked = errors.New("session store is in use")

// Options tune a Store.
type Options struct {
	// NoSync skips the fsync of each commit. Commits are then much
	// faster, and a process that is killed loses nothing (the operating
	// system has the writes), but a power loss or kernel crash may lose
	// the last commits or leave a file that Open refuses as damaged.
	// Leave it false when the session must survive the machine.
	NoSync bool
	// Timeout is how long Open waits for the file's lock. 0 means one
	// second.
	Timeout time.Duration
}

// Store is a state.Store in a file. It is safe for concurrent use, though
// a session uses it from one goroutine.
type Store struct {
	mu      sync.Mutex
	f       *os.File
	release func() // after closing f: ends the file's exclusion
	path    string
	noSync  bool
	closed  bool
	// failed is set when a commit failed after it began to change the
	// file: what the file holds is then known only by opening it again.
	failed error

	root      root // the committed log
	rootDirty bool // root written since the last fsync

	// recs is what the log holds, by kind and key, except the queued
	// records: queued says where their values are in the file (they can
	// be many: an offline spool). live is the size of the payload of a
	// frame that would hold it all.
	recs   map[state.Kind]map[string][]byte
	queued qindex
	live   int64
	vr     valueReader

	fb frameBuilder
}

var _ state.Store = (*Store)(nil)

// compactMin is the log size below which the store never compacts (a
// variable for tests).
var compactMin int64 = 1 << 20

// Open opens the store at path, creating an empty one if the file does
// not exist. It reads and checks the whole file before it returns: a file
// that is damaged, truncated, empty or not a session store is an error
// wrapping state.ErrCorruptState; one of another format version (a newer
// one, or the bbolt file of version 1), one wrapping
// state.ErrUnsupportedVersion. Memory and time are bounded by the file's
// size. A failed Open leaves the file closed and unlocked.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	f, release, err := openLocked(path, timeout)
	if err != nil {
		return nil, err
	}
	s := &Store{f: f, release: release, path: path, noSync: opts.NoSync}
	if err := s.load(); err != nil {
		f.Close()
		release()
		return nil, fmt.Errorf("filestore: opening %s: %w", path, err)
	}
	return s, nil
}

// openLocked opens the file and takes its lock, creating the file first
// if it does not exist.
func openLocked(path string, timeout time.Duration) (*os.File, func(), error) {
	deadline := time.Now().Add(timeout)
	for {
		f, release, busy, err := openExclusive(path)
		switch {
		case err == nil && !busy:
			return f, release, nil
		case errors.Is(err, fs.ErrNotExist):
			if err := create(path); err != nil {
				return nil, nil, fmt.Errorf("filestore: creating %s: %w", path, err)
			}
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("filestore: opening %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("filestore: opening %s: %w (waited %v)", path, ErrLocked, timeout)
		}
		time.Sleep(min(10*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
}

// create makes an empty store at path: it writes it in full to a new file
// beside it, then links it into place, so that path never names a file
// that is not a complete store. If another process created path
// meanwhile, that one is kept.
func create(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, base+".*.new")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var fb frameBuilder
	fb.begin(1)
	fb.reset()
	fr, _ := fb.finish()
	img := make([]byte, logStart, logStart+len(fr))
	copy(img, appendHeader(nil))
	copy(img[slotOf(1):], appendRoot(nil, root{gen: 1, start: logStart, end: logStart + int64(len(fr))}))
	img = append(img, fr...)
	_, err = tmp.Write(img)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a new directory entry durable (best effort: not every
// system can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{state.ErrCorruptState}, args...)...)
}

// load reads and checks the file, and builds the index of its records.
func (s *Store) load() error {
	fi, err := s.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	switch {
	case size == 0:
		return corruptf("empty file (0 bytes); creating a store never leaves one, so it was emptied")
	case size < headerSize:
		return corruptf("%d bytes, too short for a session store", size)
	}
	head := make([]byte, min(size, logStart))
	if _, err := s.f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	if err := checkHeader(head); err != nil {
		return err
	}
	if size < logStart+frameOverhead {
		return corruptf("%d bytes, too short for a session store", size)
	}
	ra, okA := decodeRoot(head[slotA:], slotA)
	rb, okB := decodeRoot(head[slotB:], slotB)
	var r root
	switch {
	case okA && (!okB || ra.gen > rb.gen):
		r = ra
	case okB:
		r = rb
	default:
		return corruptf("no valid root")
	}
	if r.end > size {
		return corruptf("truncated: the log ends at byte %d, the file at %d", r.end, size)
	}
	// Frame by frame: memory holds one frame at a time (and the index).
	s.recs = make(map[state.Kind]map[string][]byte)
	s.vr.r = s.f
	pos, gen := r.start, uint64(0)
	for pos < r.end {
		fr, ok := s.readFrame(pos, r.end)
		switch {
		case !ok:
			return corruptf("damaged frame at byte %d", pos)
		case pos == r.start && !startsWithReset(fr.payload):
			return corruptf("the log does not start with a whole session")
		case pos > r.start && fr.gen != gen+1:
			return corruptf("frame of commit %d after commit %d", fr.gen, gen)
		}
		if err := s.applyPayload(fr.payload, pos+frameHead); err != nil {
			return err
		}
		pos += fr.size
		gen = fr.gen
	}
	if gen != r.gen {
		return corruptf("the root names commit %d, the log ends with commit %d", r.gen, gen)
	}
	// Roll forward: frames of the next commits, written before their
	// root (a crash in between, or a root damaged since). The frame is
	// durable before its root is written, so a root that is missing or
	// damaged loses nothing that was committed.
	end := r.end
	for {
		fr, ok := s.readFrame(end, size)
		if !ok || fr.gen != gen+1 {
			break
		}
		if err := s.applyPayload(fr.payload, end+frameHead); err != nil {
			return err
		}
		end += fr.size
		gen = fr.gen
	}
	s.root = root{gen: gen, start: r.start, end: end}
	return nil
}

// readFrame reads the frame at offset at of a file of size bytes; ok is
// false when there is no complete, intact frame there.
func (s *Store) readFrame(at, size int64) (frame, bool) {
	// (size: the end of what may be read, the file's size or the log's
	// end.)
	var head [frameHead]byte
	if size-at < frameOverhead {
		return frame{}, false
	}
	if _, err := s.f.ReadAt(head[:], at); err != nil {
		return frame{}, false
	}
	n := int64(binary.BigEndian.Uint32(head[:]))
	if n > maxFrame || n > size-at-frameOverhead {
		return frame{}, false
	}
	b := make([]byte, frameOverhead+n)
	if _, err := s.f.ReadAt(b, at); err != nil {
		return frame{}, false
	}
	return parseFrame(b)
}

// applyPayload applies a frame's operations to the index; the payload is
// at offset base in the file.
func (s *Store) applyPayload(p []byte, base int64) error {
	return eachOp(p, func(o op) error {
		switch o.code {
		case opReset:
			clear(s.recs)
			s.queued.reset()
			s.live = 1
			return nil
		}
		if !validKind(o.kind) {
			return corruptf("record of unknown kind %d", o.kind)
		}
		if o.kind == state.KindQueued {
			key, err := queuedKey(o.key)
			if err != nil {
				return err
			}
			var old int64
			var had bool
			if o.code == opPut {
				size := recordSizeN(8, len(o.value))
				old, had, err = s.queued.put(&s.vr, key, base+int64(o.at), size)
				s.live += size
			} else {
				old, had, err = s.queued.del(&s.vr, key)
			}
			if had {
				s.live -= old
			}
			return err
		}
		kr := s.recs[o.kind]
		if old, ok := kr[string(o.key)]; ok {
			s.live -= recordSize(o.key, old)
			delete(kr, string(o.key))
		}
		if o.code == opPut {
			if kr == nil {
				kr = make(map[string][]byte)
				s.recs[o.kind] = kr
			}
			kr[string(o.key)] = slices.Clone(o.value)
			s.live += recordSize(o.key, o.value)
		}
		return nil
	})
}

// recordSize is the size of a record's put operation in a frame.
func recordSize(key, value []byte) int64 { return recordSizeN(len(key), len(value)) }

func recordSizeN(key, value int) int64 {
	return int64(2 + uvarintLen(key) + key + uvarintLen(value) + value)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Scan calls yield with the records of kind k from key from on, in key
// order (see state.Store). yield must not call the store.
func (s *Store) Scan(k state.Kind, from []byte, yield func(key, value []byte) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("filestore: %s: %w", s.path, state.ErrStoreClosed)
	}
	if k == state.KindQueued {
		var key [8]byte
		err := s.queued.each(&s.vr, from, func(k uint64, v []byte) bool {
			binary.BigEndian.PutUint64(key[:], k)
			return yield(key[:], v)
		})
		if err != nil {
			return fmt.Errorf("filestore: %s: %w", s.path, err)
		}
		return nil
	}
	kr := s.recs[k]
	keys := make([]string, 0, len(kr))
	for key := range kr {
		if key >= string(from) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		if !yield([]byte(key), kr[key]) {
			break
		}
	}
	return nil
}

// Apply writes a batch as one frame at the end of the log and commits it:
// unless Options.NoSync, the frame is on disk before Apply returns. If the
// disk fails after the frame was written (its fsync, or the root's write),
// the batch may or may not be in the file, and the store refuses every
// later batch: open it again to know.
func (s *Store) Apply(b *state.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("filestore: %s: %w", s.path, state.ErrStoreClosed)
	case s.failed != nil:
		return s.failed
	}
	gen := s.root.gen + 1
	s.fb.begin(gen)
	if b.Reset {
		s.fb.reset()
	}
	for _, r := range b.Deletes {
		if !validKind(r.Kind) {
			return fmt.Errorf("filestore: a record of unknown kind %d", r.Kind)
		}
		s.fb.del(r.Kind, r.Key)
	}
	for _, r := range b.Puts {
		if !validKind(r.Kind) {
			return fmt.Errorf("filestore: a record of unknown kind %d", r.Kind)
		}
		if r.Kind == state.KindQueued {
			if _, err := queuedKey(r.Key); err != nil {
				return fmt.Errorf("filestore: %w", err)
			}
		}
		s.fb.put(r.Kind, r.Key, r.Value)
	}
	for _, r := range b.Deletes {
		if r.Kind == state.KindQueued {
			if _, err := queuedKey(r.Key); err != nil {
				return fmt.Errorf("filestore: %w", err)
			}
		}
	}
	fr, err := s.fb.finish()
	if err != nil {
		return err
	}
	at, err := s.commit(fr, gen, b.Reset)
	if err != nil {
		return err
	}
	// The frame was built from the batch and is known to be well formed.
	if err := s.applyPayload(fr[frameHead:len(fr)-4], at+frameHead); err != nil {
		return err
	}
	return s.maybeCompact()
}

// commit writes a frame of commit gen and the root that makes it part of
// the log. A frame that holds a whole session (snapshot) starts a new log:
// at the front of the file when the old log leaves room there, else after
// it.
func (s *Store) commit(fr []byte, gen uint64, snapshot bool) (int64, error) {
	at, front := s.place(int64(len(fr)), snapshot)
	return at, s.commitWith(at, front, int64(len(fr)), gen, snapshot, func() error {
		_, err := s.f.WriteAt(fr, at)
		return err
	})
}

// place says where a frame of size bytes goes: after the log, or at the
// front of the file (front) for a snapshot that fits before the log.
func (s *Store) place(size int64, snapshot bool) (at int64, front bool) {
	if snapshot && logStart+size <= s.root.start {
		return logStart, true
	}
	return s.root.end, false
}

// commitWith writes a frame of size bytes at at (write) and commits it.
func (s *Store) commitWith(at int64, front bool, size int64, gen uint64, snapshot bool, write func() error) error {
	// What the value reader holds may be overwritten.
	defer s.vr.forget()
	if err := write(); err != nil {
		// Nothing refers to the partial frame; cut it off so that no
		// later open takes it for a commit (best effort).
		if !front {
			s.f.Truncate(at)
		}
		return fmt.Errorf("filestore: writing %s: %w", s.path, err)
	}
	if err := s.sync(); err != nil {
		if !front {
			s.f.Truncate(at)
		}
		return s.fail(err)
	}
	r := root{gen: gen, start: s.root.start, end: at + size}
	if snapshot {
		r.start = at
	}
	if _, err := s.f.WriteAt(appendRoot(nil, r), slotOf(gen)); err != nil {
		return s.fail(err)
	}
	s.rootDirty = !s.noSync
	if front {
		// The old log is cut off below: its successor must be on disk
		// first.
		if err := s.sync(); err != nil {
			return s.fail(err)
		}
		if err := s.f.Truncate(r.end); err != nil {
			return s.fail(err)
		}
	}
	s.root = r
	return nil
}

func (s *Store) sync() error {
	if s.noSync {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.rootDirty = false
	return nil
}

// fail makes the store refuse every later commit: a commit failed after it
// began to change the file, and only opening it again says what it holds
// (the session before the failed batch, or after it).
func (s *Store) fail(err error) error {
	s.failed = fmt.Errorf("filestore: %s: a commit failed; reopen the store: %w", s.path, err)
	return s.failed
}

// maybeCompact rewrites the log as one snapshot frame when more than
// half of it is dead: the file stays within a few times the session's
// size, and each byte written is copied a bounded number of times.
func (s *Store) maybeCompact() error {
	if s.root.end-s.root.start <= 2*(s.live+frameOverhead)+compactMin {
		return nil
	}
	// The batch is committed: a compaction that fails before its root is
	// written changes nothing (it is tried again after the next commit),
	// one that fails later makes the store refuse further commits.
	if err := s.compact(); err != nil && s.failed != nil {
		return s.failed
	}
	return nil
}

// compact writes the whole session as one snapshot frame, the new start
// of the log. It streams: the queued records' values are copied from the
// file a chunk at a time, so memory does not grow with them.
func (s *Store) compact() error {
	gen := s.root.gen + 1
	size := frameOverhead + s.live
	if s.live > maxFrame {
		return fmt.Errorf("filestore: a snapshot of %d bytes exceeds the format's %d", s.live, int64(maxFrame))
	}
	at, front := s.place(size, true)
	w := frameWriter{f: s.f, at: at}
	var rb runBuilder
	write := func() error {
		var head [frameHead]byte
		binary.BigEndian.PutUint32(head[:], uint32(s.live))
		binary.BigEndian.PutUint64(head[4:], gen)
		w.write(head[:])
		w.write([]byte{opReset})
		var fb frameBuilder
		for _, k := range state.Kinds() {
			if k == state.KindQueued {
				var key [8]byte
				err := s.queued.each(&s.vr, nil, func(qk uint64, v []byte) bool {
					binary.BigEndian.PutUint64(key[:], qk)
					fb.b = fb.b[:0]
					fb.put(k, key[:], v)
					rb.add(qk, w.pos(), int64(len(fb.b)))
					w.write(fb.b)
					return w.err == nil
				})
				if err != nil {
					return err
				}
				continue
			}
			kr := s.recs[k]
			for _, key := range slices.Sorted(maps.Keys(kr)) {
				fb.b = fb.b[:0]
				fb.put(k, []byte(key), kr[key])
				w.write(fb.b)
			}
		}
		w.finish()
		if w.err == nil && w.pos() != at+size {
			return fmt.Errorf("filestore: the snapshot came to %d bytes, %d expected", w.pos()-at, size)
		}
		return w.err
	}
	if err := s.commitWith(at, front, size, gen, true, write); err != nil {
		return err
	}
	s.queued = qindex{runs: rb.runs, count: s.queued.count}
	return nil
}

// frameWriter writes a frame to the file in chunks, with its CRC.
type frameWriter struct {
	f   *os.File
	at  int64 // where buf goes
	buf []byte
	crc uint32
	err error
}

func (w *frameWriter) pos() int64 { return w.at + int64(len(w.buf)) }

func (w *frameWriter) write(b []byte) {
	w.buf = append(w.buf, b...)
	if len(w.buf) >= readChunk {
		w.flush()
	}
}

func (w *frameWriter) flush() {
	if w.err != nil || len(w.buf) == 0 {
		return
	}
	w.crc = crc32.Update(w.crc, castagnoli, w.buf)
	_, w.err = w.f.WriteAt(w.buf, w.at)
	w.at += int64(len(w.buf))
	w.buf = w.buf[:0]
}

// finish writes what is buffered and the CRC.
func (w *frameWriter) finish() {
	w.flush()
	if w.err == nil {
		w.buf = binary.BigEndian.AppendUint32(w.buf, w.crc)
		_, w.err = w.f.WriteAt(w.buf, w.at)
		w.at += int64(len(w.buf))
		w.buf = w.buf[:0]
	}
}

// Close closes the file and releases its lock. The store refuses
// everything afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.rootDirty && s.failed == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.release()
	s.recs, s.queued = nil, qindex{}
	if err != nil {
		return fmt.Errorf("filestore: closing %s: %w", s.path, err)
	}
	return nil
}
