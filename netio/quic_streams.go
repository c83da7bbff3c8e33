package netio

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/quic-go/quic-go"
)

// quicDataStream is a data stream of a quic:// connection (EMQX's
// multi-stream mode): a client-initiated bidirectional stream opened after
// the control stream.
type quicDataStream struct {
	q       *quicConn
	num     int // the loop's number for it (1 ...)
	stream  *quic.Stream
	slot    int   // receive accounting slot (QUIC stream id / 4)
	readPos int64 // bytes read
}

var _ StreamConn = (*quicConn)(nil)

// DataStream implements StreamConn.
func (q *quicConn) DataStream(i int) (DataStream, error) {
	if i < 1 || i >= MaxQUICStreams {
		return nil, fmt.Errorf("%w: %d (1 to %d)", ErrNoSuchStream, i, MaxQUICStreams-1)
	}
	if d := q.data[i]; d != nil {
		return d, nil
	}
	if err := q.enter(); err != nil {
		return nil, err
	}
	defer q.leave()
	if q.early {
		if err := q.settleEarly(); err != nil {
			return nil, err
		}
	}
	// OpenStream fails at once rather than wait when the broker allows no
	// more streams; EMQX allows MaxQUICStreams (its default), quic-go
	// servers 100.
	st, err := q.conn.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening QUIC data stream %d: %w", i, quicError(err))
	}
	slot := streamIndex(st.StreamID())
	if slot < 0 {
		st.CancelRead(0)
		st.CancelWrite(0)
		return nil, fmt.Errorf("opening QUIC data stream %d: %w (stream id %d)", i, ErrNoSuchStream, st.StreamID())
	}
	d := &quicDataStream{q: q, num: i, stream: st, slot: slot}
	q.data[i] = d
	return d, nil
}

// ReadNow implements DataStream.
func (d *quicDataStream) ReadNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	q := d.q
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	if !q.ready.readable(d.slot, d.readPos) {
		return 0, nil
	}
	n, err := d.read(p, time.Now().Add(quicReadNowGuard))
	if err != nil && isDeadline(err) {
		return n, nil
	}
	return n, err
}

// ReadWait implements DataStream.
func (d *quicDataStream) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := d.q.enter(); err != nil {
		return 0, err
	}
	defer d.q.leave()
	n, err := d.read(p, deadline)
	if err != nil && isDeadline(err) {
		if n > 0 {
			return n, nil
		}
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

func (d *quicDataStream) read(p []byte, deadline time.Time) (int, error) {
	if err := d.stream.SetReadDeadline(deadline); err != nil {
		return 0, quicError(err)
	}
	n, err := d.stream.Read(p)
	d.readPos += int64(n)
	if err != nil && !isDeadline(err) {
		return n, fmt.Errorf("QUIC data stream %d: %w", d.num, d.q.mapError(err))
	}
	return n, err
}

// Chunks WriteNow tries when the whole buffer does not fit: quic-go's
// TryWriteAll takes all or nothing.
const (
	quicWriteChunk    = 16 << 10
	quicMinWriteChunk = 1 << 10
)

// WriteNow implements DataStream with quic-go's TryWriteAll, which queues
// data for the connection's packets without waiting for them to leave and
// takes only what the broker's receive window allows.
func (d *quicDataStream) WriteNow(p []byte) (int, error) {
	if err := d.q.enter(); err != nil {
		return 0, err
	}
	defer d.q.leave()
	written := 0
	chunk := len(p)
	for written < len(p) {
		c := min(chunk, len(p)-written)
		err := d.stream.TryWriteAll(p[written : written+c])
		switch {
		case err == nil:
			written += c
			if chunk == len(p) {
				chunk = quicWriteChunk
			}
		case errors.Is(err, quic.ErrWouldBlock):
			if c <= quicMinWriteChunk {
				return written, nil
			}
			chunk = max(min(c, quicWriteChunk)/2, quicMinWriteChunk)
		default:
			return written, fmt.Errorf("QUIC data stream %d: %w", d.num, d.q.mapError(err))
		}
	}
	return written, nil
}
