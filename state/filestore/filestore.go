package filestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mqttloop/mqttloop/state"
)

// ErrLocked: another process (or another Store in this one) has the file
// open.
var ErrLocked = errors.New("session store is in use")

// Options tune a Store.
type Options struct {
	// NoSync skips the fsync at the end of each commit. Commits are then
	// much faster, and a process that is killed loses nothing (the
	// operating system has the writes), but a power loss or kernel crash
	// may lose the last commits, or, rarely, leave a file bbolt refuses
	// to open. Leave it false when the session must survive the machine.
	NoSync bool
	// Timeout is how long Open waits for the file's lock. 0 means one
	// second.
	Timeout time.Duration
}

// headerBucket holds formatKey → formatMagic + version (2 bytes).
var (
	headerBucket = []byte("mqttloop")
	formatKey    = []byte("format")
)

const formatMagic = "mqttloop-session-store"

// Store is a state.Store in a bbolt file.
type Store struct {
	db   *bolt.DB
	path string
}

var _ state.Store = (*Store)(nil)

// Open opens the store at path, creating an empty one if the file does
// not exist. A file that is not a session store (another bbolt database,
// or not a bbolt file at all) is an error wrapping state.ErrCorruptState;
// a store written by a newer version of this package, one wrapping
// state.ErrUnsupportedVersion.
func Open(path string, opts Options) (st *Store, err error) {
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	db, err := openBolt(path, timeout, opts.NoSync)
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("filestore: opening %s: %w (waited %v)", path, ErrLocked, timeout)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
			return nil, fmt.Errorf("filestore: %s is not a session store: %w: %w", path, state.ErrCorruptState, err)
		}
		return nil, fmt.Errorf("filestore: opening %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// openBolt opens the database, turning a panic of bbolt on a damaged
// file into an error.
func openBolt(path string, timeout time.Duration, noSync bool) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %v", berrors.ErrInvalid, r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: noSync})
}

// guard turns a panic of bbolt (on a damaged file) into an error.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("filestore: damaged file: %w: %v", state.ErrCorruptState, r)
	}
}

// init checks the header of an existing store, or writes it and the
// buckets into an empty file.
func (s *Store) init() (err error) {
	defer guard(&err)
	empty := false
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(headerBucket) == nil {
			foreign := false
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { foreign = true; return nil })
			if foreign {
				return fmt.Errorf("filestore: %s is a bbolt database but not a session store: %w", s.path, state.ErrCorruptState)
			}
			empty = true
			return nil
		}
		return s.checkHeader(tx)
	})
	if err != nil || !empty {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		h, err := tx.CreateBucketIfNotExists(headerBucket)
		if err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint16([]byte(formatMagic), state.FormatVersion)
		if err := h.Put(formatKey, v); err != nil {
			return err
		}
		for _, k := range state.Kinds() {
			if _, err := tx.CreateBucketIfNotExists([]byte(k.String())); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) checkHeader(tx *bolt.Tx) error {
	h := tx.Bucket(headerBucket)
	if h == nil {
		return fmt.Errorf("filestore: %s: %w: no header", s.path, state.ErrCorruptState)
	}
	v := h.Get(formatKey)
	if len(v) != len(formatMagic)+2 || !bytes.HasPrefix(v, []byte(formatMagic)) {
		return fmt.Errorf("filestore: %s: %w: bad header", s.path, state.ErrCorruptState)
	}
	switch ver := binary.BigEndian.Uint16(v[len(formatMagic):]); {
	case ver == 0:
		return fmt.Errorf("filestore: %s: %w: format version 0", s.path, state.ErrCorruptState)
	case ver > state.FormatVersion:
		return fmt.Errorf("filestore: %s: %w: version %d (this package reads up to %d)", s.path, state.ErrUnsupportedVersion, ver, state.FormatVersion)
	}
	for _, k := range state.Kinds() {
		if tx.Bucket([]byte(k.String())) == nil {
			return fmt.Errorf("filestore: %s: %w: no %s bucket", s.path, state.ErrCorruptState, k)
		}
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Scan calls yield with the records of kind k from key from on, in key
// order (see state.Store).
func (s *Store) Scan(k state.Kind, from []byte, yield func(key, value []byte) bool) (err error) {
	defer guard(&err)
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(k.String()))
		if b == nil {
			return fmt.Errorf("filestore: %s: %w: no %s bucket", s.path, state.ErrCorruptState, k)
		}
		c := b.Cursor()
		key, val := c.First()
		if from != nil {
			key, val = c.Seek(storedKey(k, from))
		}
		for ; key != nil; key, val = c.Next() {
			if val == nil {
				return fmt.Errorf("filestore: %s: %w: nested bucket in %s", s.path, state.ErrCorruptState, k)
			}
			r, ok := record(k, key, val)
			if !ok {
				return fmt.Errorf("filestore: %s: %w: %s record with a bad long key", s.path, state.ErrCorruptState, k)
			}
			if !yield(r.Key, r.Value) {
				break
			}
		}
		return nil
	})
	return s.wrap(err)
}

// Apply applies a batch in one read-write transaction.
func (s *Store) Apply(b *state.Batch) (err error) {
	defer guard(&err)
	err = s.db.Update(func(tx *bolt.Tx) error {
		if b.Reset {
			for _, k := range state.Kinds() {
				name := []byte(k.String())
				if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
					return err
				}
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
		}
		for _, r := range b.Deletes {
			bk, err := bucket(tx, r.Kind)
			if err != nil {
				return err
			}
			if err := bk.Delete(storedKey(r.Kind, r.Key)); err != nil {
				return err
			}
		}
		for _, r := range b.Puts {
			bk, err := bucket(tx, r.Kind)
			if err != nil {
				return err
			}
			key, val := r.Key, r.Value
			if long(r.Kind, key) {
				key, val = storedKey(r.Kind, key), appendLongKey(nil, r.Key, r.Value)
			}
			if err := bk.Put(key, val); err != nil {
				return fmt.Errorf("%s record: %w", r.Kind, err)
			}
		}
		return nil
	})
	return s.wrap(err)
}

func bucket(tx *bolt.Tx, k state.Kind) (*bolt.Bucket, error) {
	b := tx.Bucket([]byte(k.String()))
	if b == nil {
		return nil, fmt.Errorf("no bucket for records of kind %s", k)
	}
	return b, nil
}

// Keys longer than bbolt allows (topic filters may have up to 65,535
// bytes) are stored under 0x00 + SHA-256(key), with the key in front of
// the value. A topic filter never starts with 0x00 (U+0000 is not allowed
// in MQTT strings), nor does any other key of this length.
func long(k state.Kind, key []byte) bool {
	return k == state.KindSubscription && len(key) > bolt.MaxKeySize
}

func storedKey(k state.Kind, key []byte) []byte {
	if !long(k, key) {
		return key
	}
	sum := sha256.Sum256(key)
	return append([]byte{0}, sum[:]...)
}

func appendLongKey(b, key, val []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, val...)
}

// record turns a stored key and value back into a record.
func record(k state.Kind, key, val []byte) (state.Record, bool) {
	if len(key) != 1+sha256.Size || key[0] != 0 || k != state.KindSubscription {
		return state.Record{Kind: k, Key: key, Value: val}, true
	}
	n, w := binary.Uvarint(val)
	if w <= 0 || n > uint64(len(val)-w) {
		return state.Record{}, false
	}
	orig := val[w : w+int(n)]
	if sum := sha256.Sum256(orig); !bytes.Equal(sum[:], key[1:]) {
		return state.Record{}, false
	}
	return state.Record{Kind: k, Key: orig, Value: val[w+int(n):]}, true
}

// wrap maps bbolt's "not open" to state.ErrStoreClosed.
func (s *Store) wrap(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("filestore: %s: %w", s.path, state.ErrStoreClosed)
	}
	return err
}

// Close closes the file. The store refuses everything afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("filestore: closing %s: %w", s.path, err)
	}
	return nil
}
