package wire

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

const (
	// writerStartSize is the capacity a Writer's buffer starts with.
	writerStartSize = 16 << 10
	// writerKeepSize is the largest buffer a Writer keeps after a Flush;
	// a larger one (grown for a big PUBLISH or a big batch) is released.
	writerKeepSize = 256 << 10
)

// Writer encodes packets into an internal buffer so that everything the
// event loop produces in one iteration goes out in a single Write.
//
// The zero Writer is ready to use and accepts packets up to the protocol
// maximum. A Writer is not safe for concurrent use.
type Writer struct {
	buf   []byte
	off   int // bytes of buf already written by FlushNow
	limit int
	codec Codec  // the protocol version encoded
	total uint64 // bytes written since the Writer was made
}

// Total returns the number of bytes written by Flush and FlushNow since
// the Writer was made (Reset does not clear it).
func (w *Writer) Total() uint64 { return w.total }

// NowSink is what FlushNow writes to: a writer that takes what it can
// without blocking (netio.DataStream).
type NowSink interface {
	WriteNow(p []byte) (int, error)
}

// NewWriter returns a Writer that refuses packets larger than
// maxPacketSize bytes, fixed header included; pass the Maximum Packet
// Size the broker announced in CONNACK. maxPacketSize <= 0 means the
// protocol maximum.
func NewWriter(maxPacketSize int) *Writer {
	w := &Writer{}
	w.SetMaxPacketSize(maxPacketSize)
	return w
}

// SetMaxPacketSize changes the largest packet Append accepts, in bytes,
// fixed header included. n <= 0 means the protocol maximum.
func (w *Writer) SetMaxPacketSize(n int) {
	w.limit = max(n, 0)
}

// SetCodec selects the protocol version Append encodes (V5, the
// default, or V311).
func (w *Writer) SetCodec(c Codec) { w.codec = c }

// Codec returns the codec the Writer encodes with.
func (w *Writer) Codec() Codec { return w.codec }

// Append encodes p with the Writer's codec (see Codec.Append) at the end
// of the buffer. If p cannot be encoded or is larger than the maximum
// packet size, nothing is buffered and the error wraps ErrPacketTooLarge
// or ErrInvalidPacket.
func (w *Writer) Append(p packets.Packet) error {
	if w.buf == nil {
		if b, ok := writeBufs.Get().(*[writerStartSize]byte); ok {
			w.buf = b[:0]
		} else {
			w.buf = make([]byte, 0, writerStartSize)
		}
	}
	buf, err := w.codec.Append(w.buf, p, w.limit)
	if err != nil {
		return err
	}
	w.buf = buf
	return nil
}

// Buffered returns the number of encoded bytes waiting for Flush.
func (w *Writer) Buffered() int { return len(w.buf) - w.off }

// Reset discards the buffered bytes, for example when the connection they
// were meant for is gone.
func (w *Writer) Reset() {
	w.buf = w.buf[:0]
	w.off = 0
	w.shrink()
}

// FlushNow writes what c takes of the buffered bytes without blocking and
// keeps the rest for a later call. It reports whether everything was
// written. After an error the connection is unusable (part of a packet may
// have been written).
func (w *Writer) FlushNow(c NowSink) (bool, error) {
	if w.Buffered() == 0 {
		return true, nil
	}
	n, err := c.WriteNow(w.buf[w.off:])
	n = clamp(n, len(w.buf)-w.off)
	w.off += n
	w.total += uint64(n)
	if err != nil {
		w.Reset()
		return false, fmt.Errorf("mqttloop: flush: %w", err)
	}
	if w.off < len(w.buf) {
		return false, nil
	}
	w.Reset()
	return true, nil
}

// Flush writes everything buffered to c in one Write, under a write
// deadline (c.SetWriteDeadline(deadline); the zero time means none), and
// empties the buffer. It does nothing when nothing is buffered.
//
// The buffer is emptied even when Flush fails: part of a packet may have
// been written, so the connection is unusable and must be closed.
func (w *Writer) Flush(c Sink, deadline time.Time) error {
	if w.Buffered() == 0 {
		return nil
	}
	defer w.Reset()
	if err := c.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("mqttloop: flush: set write deadline: %w", err)
	}
	buf := w.buf[w.off:]
	n, err := c.Write(buf)
	w.total += uint64(clamp(n, len(buf)))
	if err != nil {
		return fmt.Errorf("mqttloop: flush %d bytes (%d written): %w", len(buf), n, err)
	}
	if n != len(buf) {
		return fmt.Errorf("mqttloop: flush %d bytes (%d written): %w", len(buf), n, io.ErrShortWrite)
	}
	return nil
}

// writeBufs holds start-size write buffers released by idle Writers.
var writeBufs sync.Pool // of *[writerStartSize]byte

// Release hands an empty buffer back to a pool shared by every Writer of
// the process, so that an idle connection holds no write buffer; the next
// Append takes one from the pool (or allocates it). It does nothing while
// bytes are buffered.
func (w *Writer) Release() {
	if len(w.buf) != 0 || cap(w.buf) != writerStartSize {
		if len(w.buf) == 0 && cap(w.buf) > 0 {
			w.buf = nil
		}
		return
	}
	writeBufs.Put((*[writerStartSize]byte)(w.buf[:writerStartSize]))
	w.buf = nil
}

func (w *Writer) shrink() {
	if cap(w.buf) > writerKeepSize {
		w.buf = nil
	}
}
