package wire

import (
	"fmt"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// defaultReadBuffer is the Reader's buffer size. The buffer grows beyond
// it only to hold one legal packet that is larger, and shrinks back once
// that packet is consumed.
const defaultReadBuffer = 64 << 10

// Reader frames the MQTT packets a client receives out of the byte stream
// of a Source and decodes them with its Codec. It reads
// into one internal buffer that it reuses: 64 KiB, grown only to hold a
// single legal packet that is larger and shrunk back afterwards. A packet
// whose announced size exceeds the maximum packet size is refused as soon
// as its fixed header is read, before anything is allocated for it. A
// larger legal packet grows the buffer by doubling as its bytes arrive,
// never to the announced size up front, so memory stays within twice what
// the peer actually sent and never exceeds max(64 KiB, maximum packet
// size).
//
// The zero Reader is ready to use and accepts packets up to the protocol
// maximum. A Reader is not safe for concurrent use.
//
// The usual cycle is: FillNow or FillWait once, then Next until it returns
// a nil packet.
type Reader struct {
	buf   []byte // len(buf) is the usable size
	r, w  int    // unread bytes are buf[r:w]
	limit int    // maximum whole packet size; 0 means maxPacketSize
	start int    // size of a fresh buffer; 0 means defaultReadBuffer
	err   error  // sticky framing or decoding error
	codec Codec  // the protocol version decoded
	total uint64 // bytes read since the Reader was made
}

// NewReader returns a Reader that refuses packets larger than
// maxPacketSize bytes, fixed header included (the unit of the MQTT 5
// Maximum Packet Size property). maxPacketSize <= 0 means the protocol
// maximum, a remaining length of 268,435,455 bytes.
func NewReader(maxPacketSize int) *Reader {
	rd := &Reader{}
	rd.SetMaxPacketSize(maxPacketSize)
	return rd
}

// SetMaxPacketSize changes the largest packet the Reader accepts, in
// bytes, fixed header included. n <= 0 means the protocol maximum. The
// new limit applies to packets whose fixed header has not been checked
// yet.
func (rd *Reader) SetMaxPacketSize(n int) {
	if n <= 0 || n > maxPacketSize {
		n = 0
	}
	rd.limit = n
}

// SetCodec selects the protocol version the Reader decodes (V5, the
// default, or V311). It applies to packets not returned yet.
func (rd *Reader) SetCodec(c Codec) { rd.codec = c }

// Codec returns the codec the Reader decodes with.
func (rd *Reader) Codec() Codec { return rd.codec }

// MaxPacketSize returns the largest packet the Reader accepts, in bytes,
// fixed header included.
func (rd *Reader) MaxPacketSize() int {
	if rd.limit == 0 {
		return maxPacketSize
	}
	return rd.limit
}

// Buffered returns the number of bytes read from the connection and not
// yet returned as packets.
func (rd *Reader) Buffered() int { return rd.w - rd.r }

// Reset discards buffered bytes and a previous error so that the Reader
// can serve a new connection. It keeps the maximum packet size and the
// codec.
func (rd *Reader) Reset() {
	rd.r, rd.w, rd.err = 0, 0, nil
	if len(rd.buf) > rd.startSize() {
		rd.buf = nil
	}
}

// FillNow reads once from c without blocking (c.ReadNow) into the free
// space of the buffer and returns the number of bytes read. Errors from c
// are returned unchanged (io.EOF once the peer closed the connection).
// If the buffer holds only complete packets and has no free space,
// FillNow reads nothing and returns 0, nil: call Next first. FillNow can
// also report the framing errors of Next when it checks the header of a
// packet it must make room for; once either has failed, FillNow returns
// that error and reads nothing.
func (rd *Reader) FillNow(c Source) (int, error) {
	free, err := rd.space()
	if err != nil || len(free) == 0 {
		return 0, err
	}
	n, err := c.ReadNow(free)
	n = clamp(n, len(free))
	rd.w += n
	rd.total += uint64(n)
	return n, err
}

// FillWait reads once from c (c.ReadWait), parking until bytes arrive or
// the deadline passes; a zero deadline means none. On timeout it returns
// 0 and an error satisfying errors.Is(err, os.ErrDeadlineExceeded). Other
// errors are those of FillNow.
func (rd *Reader) FillWait(c Source, deadline time.Time) (int, error) {
	free, err := rd.space()
	if err != nil || len(free) == 0 {
		return 0, err
	}
	n, err := c.ReadWait(free, deadline)
	n = clamp(n, len(free))
	rd.w += n
	rd.total += uint64(n)
	return n, err
}

// Total returns the number of bytes read since the Reader was made (Reset
// does not clear it).
func (rd *Reader) Total() uint64 { return rd.total }

func clamp(n, max int) int {
	if n < 0 {
		return 0
	}
	return min(n, max)
}

// Next returns the next complete packet from the buffered bytes (decoded
// by Codec.Decode), or nil and a nil error when no complete packet is
// buffered yet. The packet does not refer to the Reader's buffer and may
// be kept.
//
// Errors wrap ErrMalformedPacket (bad fixed header, a remaining length
// longer than four bytes, a body that does not decode, or a packet that
// only a client sends: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ) or
// ErrPacketTooLarge (the announced size exceeds the maximum packet size).
// They are final: the stream cannot be resynchronised, so Next and the
// Fill methods keep returning the error until Reset.
func (rd *Reader) Next() (*Packet, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	size, hlen, err := rd.peek()
	if err != nil {
		rd.err = err
		return nil, err
	}
	if size == 0 {
		return nil, nil
	}
	if rd.w-rd.r < size {
		if rd.r > 0 && rd.r+size > len(rd.buf) {
			rd.compact() // let the packet grow from the start of the buffer
		}
		return nil, nil
	}
	header := rd.buf[rd.r]
	body := rd.buf[rd.r+hlen : rd.r+size]
	rd.r += size
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
	pkt, err := rd.codec.Decode(header, body)
	if err != nil {
		rd.err = err
		return nil, err
	}
	return pkt, nil
}

// peek parses the fixed header of the next packet. It returns size == 0
// when the header is not complete yet, otherwise the whole packet size and
// the header length. It refuses the packet before its body is read.
func (rd *Reader) peek() (size, hlen int, err error) {
	if rd.r == rd.w {
		return 0, 0, nil
	}
	header := rd.buf[rd.r]
	if err := rd.codec.checkHeader(header); err != nil {
		return 0, 0, err
	}
	switch typ := header >> 4; typ {
	case packets.CONNECT, packets.SUBSCRIBE, packets.UNSUBSCRIBE, packets.PINGREQ:
		// A broker never sends these; refusing them before their body
		// is read keeps their decoding (CONNECT's user properties in the
		// packets model) off the client's path.
		return 0, 0, fmt.Errorf("%w: %s, which only a client sends", ErrMalformedPacket, packetNames[typ])
	}
	rem, n, err := vbi.Parse(rd.buf[rd.r+1 : rd.w])
	if err != nil {
		return 0, 0, malformed(header>>4, "remaining length longer than 4 bytes")
	}
	if n == 0 {
		return 0, 0, nil
	}
	size = 1 + n + rem
	if limit := rd.MaxPacketSize(); size > limit {
		return 0, 0, fmt.Errorf("%w: incoming %s announces %d bytes, the maximum packet size is %d",
			ErrPacketTooLarge, packetNames[header>>4], size, limit)
	}
	return size, 1 + n, nil
}

// readBufs holds default-size read buffers that Readers released while
// their connection was idle, for whichever Reader reads next: a process
// with many idle connections holds buffers only for the busy ones.
var readBufs sync.Pool // of *[defaultReadBuffer]byte

// Release hands the buffer back to a pool shared by every Reader of the
// process when nothing is buffered, so that an idle connection holds no
// read buffer; the next read takes one from the pool (or allocates it).
// Call it before waiting for a connection that is likely to stay quiet.
// It does nothing while bytes are buffered or the buffer is not the
// default size.
func (rd *Reader) Release() {
	if rd.r != rd.w || rd.start != 0 || len(rd.buf) != defaultReadBuffer {
		return
	}
	readBufs.Put((*[defaultReadBuffer]byte)(rd.buf))
	rd.buf, rd.r, rd.w = nil, 0, 0
}

func newReadBuf(size int) []byte {
	if size == defaultReadBuffer {
		if b, ok := readBufs.Get().(*[defaultReadBuffer]byte); ok {
			return b[:]
		}
	}
	return make([]byte, size)
}

func (rd *Reader) startSize() int {
	if rd.start > 0 {
		return rd.start
	}
	return defaultReadBuffer
}

func (rd *Reader) realloc(n int) {
	buf := make([]byte, n)
	rd.w = copy(buf, rd.buf[rd.r:rd.w])
	rd.r = 0
	rd.buf = buf
}

func (rd *Reader) compact() {
	rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
	rd.r = 0
}

// space returns the free end of the buffer, allocating, compacting,
// growing or shrinking the buffer as needed.
func (rd *Reader) space() ([]byte, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	start := rd.startSize()
	if rd.buf == nil {
		rd.buf = newReadBuf(start)
	}
	if len(rd.buf) > start && rd.w-rd.r <= start {
		// The large packet the buffer grew for is consumed: shrink back
		// unless the next one needs the room too.
		size, _, err := rd.peek()
		if err != nil {
			rd.err = err
			return nil, err
		}
		if size <= start {
			buf := newReadBuf(start)
			rd.w = copy(buf, rd.buf[rd.r:rd.w])
			rd.r = 0
			rd.buf = buf
		}
	}
	if rd.r > 0 && len(rd.buf)-rd.w < len(rd.buf)/4 {
		rd.compact()
	}
	if rd.w == len(rd.buf) {
		// A single unfinished packet fills the buffer: its header is
		// complete, so its size is known.
		size, _, err := rd.peek()
		if err != nil {
			rd.err = err
			return nil, err
		}
		if size > len(rd.buf) {
			// Grow by doubling as bytes arrive rather than to the announced
			// size at once: a peer that announces a huge packet and sends
			// nothing costs no memory.
			rd.realloc(min(size, 2*len(rd.buf)))
		}
	}
	return rd.buf[rd.w:], nil
}
