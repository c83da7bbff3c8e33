package filestore

import (
	"encoding/binary"
	"errors"
	"fmt"
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

	// recs is what the log holds, by kind and key; live is the size of
	// the payload of a frame that would hold it all.
	recs map[state.Kind]map[string][]byte
	live int64

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
	data := make([]byte, r.end-r.start)
	if _, err := s.f.ReadAt(data, r.start); err != nil {
		return fmt.Errorf("reading the log: %w", err)
	}
	s.recs = make(map[state.Kind]map[string][]byte)
	pos, gen := 0, uint64(0)
	for pos < len(data) {
		fr, ok := parseFrame(data[pos:])
		switch {
		case !ok:
			return corruptf("damaged frame at byte %d", r.start+int64(pos))
		case pos == 0 && !startsWithReset(fr.payload):
			return corruptf("the log does not start with a whole session")
		case pos > 0 && fr.gen != gen+1:
			return corruptf("frame of commit %d after commit %d", fr.gen, gen)
		}
		if err := s.applyPayload(fr.payload); err != nil {
			return err
		}
		pos += int(fr.size)
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
		if err := s.applyPayload(fr.payload); err != nil {
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

// applyPayload applies a frame's operations to the index.
func (s *Store) applyPayload(p []byte) error {
	return eachOp(p, func(o op) error {
		switch o.code {
		case opReset:
			clear(s.recs)
			s.live = 1
			return nil
		}
		if !validKind(o.kind) {
			return corruptf("record of unknown kind %d", o.kind)
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
func recordSize(key, value []byte) int64 {
	return int64(2 + uvarintLen(len(key)) + len(key) + uvarintLen(len(value)) + len(value))
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
		s.fb.put(r.Kind, r.Key, r.Value)
	}
	fr, err := s.fb.finish()
	if err != nil {
		return err
	}
	if err := s.commit(fr, gen, b.Reset); err != nil {
		return err
	}
	// The frame was built from the batch and is known to be well formed.
	if err := s.applyPayload(fr[frameHead : len(fr)-4]); err != nil {
		return err
	}
	return s.maybeCompact()
}

// commit writes a frame of commit gen and the root that makes it part of
// the log. A frame that holds a whole session (snapshot) starts a new log:
// at the front of the file when the old log leaves room there, else after
// it.
func (s *Store) commit(fr []byte, gen uint64, snapshot bool) error {
	at, front := s.root.end, false
	if snapshot && logStart+int64(len(fr)) <= s.root.start {
		at, front = logStart, true
	}
	if _, err := s.f.WriteAt(fr, at); err != nil {
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
	r := root{gen: gen, start: s.root.start, end: at + int64(len(fr))}
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
// of the log.
func (s *Store) compact() error {
	gen := s.root.gen + 1
	s.fb.begin(gen)
	s.fb.reset()
	for _, k := range state.Kinds() {
		kr := s.recs[k]
		for _, key := range slices.Sorted(maps.Keys(kr)) {
			s.fb.put(k, []byte(key), kr[key])
		}
	}
	fr, err := s.fb.finish()
	if err != nil {
		return err
	}
	return s.commit(fr, gen, true)
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
	s.recs = nil
	if err != nil {
		return fmt.Errorf("filestore: closing %s: %w", s.path, err)
	}
	return nil
}
