package netio

import (
	"errors"
	"time"
)

// StreamConn is implemented by connections that can carry MQTT on several
// streams besides the one the Conn methods read and write (the control
// stream): quic://, in EMQX's multi-stream mode. Data streams are numbered
// 1 to MaxQUICStreams-1 and opened (client-initiated bidirectional QUIC
// streams) on first use. The Readiness returned by Arm covers them all.
type StreamConn interface {
	Conn
	// DataStream returns data stream i, opening it on first use.
	DataStream(i int) (DataStream, error)
}

// DataStream is one data stream of a StreamConn, used from the event
// loop's goroutine. Neither reading nor writing blocks.
type DataStream interface {
	// ReadNow reads bytes the stream already has, without blocking (see
	// Conn.ReadNow).
	ReadNow(p []byte) (int, error)
	// ReadWait parks until bytes arrive or the deadline passes (see
	// Conn.ReadWait).
	ReadWait(p []byte, deadline time.Time) (int, error)
	// WriteNow queues as much of p as flow control allows, without
	// waiting for the network, and returns how much it took. Taking less
	// than len(p) (even 0) with a nil error means the broker's receive
	// window is full: the Readiness signals when the broker grants more
	// (MAX_STREAM_DATA or MAX_DATA), and the rest can be written then.
	WriteNow(p []byte) (int, error)
}

// ErrNoSuchStream: a data stream number outside 1 to MaxQUICStreams-1.
var ErrNoSuchStream = errors.New("netio: no such data stream")
