package filestore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/mqttloop/mqttloop/state"
)

// The file format (FORMAT.md in this directory): a header written once, two
// root slots that say which part of the file is the committed log, and the
// log: frames, one per commit, each a batch of record operations closed by
// a CRC-32C.

// FormatVersion is the version of the file format this package writes and
// reads. Version 1 was a bbolt database; this package refuses it with an
// error wrapping state.ErrUnsupportedVersion.
const FormatVersion = 2

const (
	fileMagic = "MQLSTORE"
	rootMagic = "MQLROOT\x00"

	headerSize = 32   // magic, format version, record version, reserved, CRC
	rootSize   = 36   // magic, generation, start, end, CRC
	slotA      = 512  // the root of even generations
	slotB      = 1024 // the root of odd generations
	logStart   = 4096 // where frames begin

	frameHead     = 12 // payload length (4), generation (8)
	frameOverhead = frameHead + 4
	// maxFrame caps a frame's payload: a session's records, with the
	// largest packets MQTT allows, and far below what a length field
	// could claim.
	maxFrame = 1 << 31
)

// Operations in a frame's payload.
const (
	opReset  = 1 // delete every record
	opPut    = 2 // kind, key, value (the framing of state.Save's records)
	opDelete = 3 // kind, key
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendHeader(b []byte) []byte {
	start := len(b)
	b = append(b, fileMagic...)
	b = binary.BigEndian.AppendUint16(b, FormatVersion)
	b = binary.BigEndian.AppendUint16(b, state.FormatVersion)
	b = append(b, make([]byte, 16)...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// boltMagic starts the meta page of a bbolt file (after its 16-byte page
// header, little-endian): the format of version 1.
const boltMagic = 0xED0CDAED

// checkHeader checks the file's header; data holds at least its first
// headerSize bytes.
func checkHeader(data []byte) error {
	if string(data[:len(fileMagic)]) != fileMagic {
		if len(data) >= 20 && binary.LittleEndian.Uint32(data[16:]) == boltMagic {
			return fmt.Errorf("%w: a session store of format version 1 (a bbolt database), which this version does not read; delete it to start a new session", state.ErrUnsupportedVersion)
		}
		return fmt.Errorf("%w: not a session store (bad magic bytes)", state.ErrCorruptState)
	}
	if crc32.Checksum(data[:headerSize-4], castagnoli) != binary.BigEndian.Uint32(data[headerSize-4:]) {
		return fmt.Errorf("%w: header checksum mismatch", state.ErrCorruptState)
	}
	switch v := binary.BigEndian.Uint16(data[8:]); {
	case v < FormatVersion:
		return fmt.Errorf("%w: header names format version %d", state.ErrCorruptState, v)
	case v > FormatVersion:
		return fmt.Errorf("%w: store format version %d (this package reads %d)", state.ErrUnsupportedVersion, v, FormatVersion)
	}
	switch v := binary.BigEndian.Uint16(data[10:]); {
	case v == 0:
		return fmt.Errorf("%w: record format version 0", state.ErrCorruptState)
	case v > state.FormatVersion:
		return fmt.Errorf("%w: record format version %d (this package reads up to %d)", state.ErrUnsupportedVersion, v, state.FormatVersion)
	}
	return nil
}

// root says which part of the file is the committed log: the frames in
// [start, end), the last of generation gen.
type root struct {
	gen        uint64
	start, end int64
}

func slotOf(gen uint64) int64 {
	if gen%2 == 0 {
		return slotA
	}
	return slotB
}

func appendRoot(b []byte, r root) []byte {
	start := len(b)
	b = append(b, rootMagic...)
	b = binary.BigEndian.AppendUint64(b, r.gen)
	b = binary.BigEndian.AppendUint64(b, uint64(r.start))
	b = binary.BigEndian.AppendUint64(b, uint64(r.end))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// decodeRoot decodes a root slot; ok is false for a slot that holds no
// valid root (never written, torn or damaged).
func decodeRoot(b []byte, slot int64) (root, bool) {
	if len(b) < rootSize || string(b[:len(rootMagic)]) != rootMagic ||
		crc32.Checksum(b[:rootSize-4], castagnoli) != binary.BigEndian.Uint32(b[rootSize-4:]) {
		return root{}, false
	}
	r := root{
		gen:   binary.BigEndian.Uint64(b[8:]),
		start: int64(binary.BigEndian.Uint64(b[16:])),
		end:   int64(binary.BigEndian.Uint64(b[24:])),
	}
	// A root in the wrong slot, or whose region is not after the header,
	// is not one this package wrote.
	if r.gen == 0 || slotOf(r.gen) != slot || r.start < logStart || r.end < r.start+frameOverhead || r.end > 1<<62 {
		return root{}, false
	}
	return r, true
}

// frame is a frame's place in the file and what it holds.
type frame struct {
	gen     uint64
	payload []byte // aliases the bytes read
	size    int64  // the whole frame
}

// parseFrame reads the frame at the start of b (the file from its offset
// on). ok is false when b does not start with a complete, intact frame.
func parseFrame(b []byte) (frame, bool) {
	if len(b) < frameOverhead {
		return frame{}, false
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > maxFrame || n > uint64(len(b)-frameOverhead) {
		return frame{}, false
	}
	end := frameHead + int(n)
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return frame{}, false
	}
	return frame{gen: binary.BigEndian.Uint64(b[4:]), payload: b[frameHead:end], size: int64(end + 4)}, true
}

// frameBuilder encodes a frame: head, operations, CRC.
type frameBuilder struct{ b []byte }

func (f *frameBuilder) begin(gen uint64) {
	f.b = append(f.b[:0], 0, 0, 0, 0)
	f.b = binary.BigEndian.AppendUint64(f.b, gen)
}

func (f *frameBuilder) reset() { f.b = append(f.b, opReset) }

func (f *frameBuilder) put(k state.Kind, key, value []byte) {
	f.b = append(f.b, opPut, byte(k))
	f.b = binary.AppendUvarint(f.b, uint64(len(key)))
	f.b = append(f.b, key...)
	f.b = binary.AppendUvarint(f.b, uint64(len(value)))
	f.b = append(f.b, value...)
}

func (f *frameBuilder) del(k state.Kind, key []byte) {
	f.b = append(f.b, opDelete, byte(k))
	f.b = binary.AppendUvarint(f.b, uint64(len(key)))
	f.b = append(f.b, key...)
}

// finish closes the frame and returns its bytes, or an error if it is too
// large for the format.
func (f *frameBuilder) finish() ([]byte, error) {
	n := len(f.b) - frameHead
	if uint64(n) > maxFrame {
		return nil, fmt.Errorf("filestore: a commit of %d bytes exceeds the format's %d", n, maxFrame)
	}
	binary.BigEndian.PutUint32(f.b, uint32(n))
	f.b = binary.BigEndian.AppendUint32(f.b, crc32.Checksum(f.b, castagnoli))
	return f.b, nil
}

// op is one decoded operation; key and value alias the payload.
type op struct {
	code       byte
	kind       state.Kind
	key, value []byte
	valueAt    int // the value's offset in the payload
	at         int // the operation's offset in the payload
}

// eachOp calls fn with each operation of a payload. Every length is
// checked against the bytes that remain before it is used.
func eachOp(p []byte, fn func(op) error) error {
	total := len(p)
	for len(p) > 0 {
		o := op{code: p[0], at: total - len(p)}
		p = p[1:]
		if o.code == opReset {
			if err := fn(o); err != nil {
				return err
			}
			continue
		}
		if (o.code != opPut && o.code != opDelete) || len(p) == 0 {
			return fmt.Errorf("%w: bad operation in a frame", state.ErrCorruptState)
		}
		o.kind = state.Kind(p[0])
		p = p[1:]
		var ok bool
		if o.key, p, ok = lengthPrefixed(p); !ok {
			return fmt.Errorf("%w: bad key length in a frame", state.ErrCorruptState)
		}
		if o.code == opPut {
			if o.value, p, ok = lengthPrefixed(p); !ok {
				return fmt.Errorf("%w: bad value length in a frame", state.ErrCorruptState)
			}
			o.valueAt = total - len(p) - len(o.value)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func lengthPrefixed(p []byte) (v, rest []byte, ok bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return p[w:end:end], p[end:], true
}

// startsWithReset reports whether a payload starts with a reset: the
// first frame of the log holds a whole session.
func startsWithReset(p []byte) bool { return len(p) > 0 && p[0] == opReset }

// validKind reports whether k is a kind of record the session has.
func validKind(k state.Kind) bool {
	return bytes.IndexByte(kinds, byte(k)) >= 0
}

var kinds = func() []byte {
	var b []byte
	for _, k := range state.Kinds() {
		b = append(b, byte(k))
	}
	return b
}()
