// Package wire is the MQTT codec and framing of the event loop: it turns
// the bytes of a connection into packets and packets into bytes, for MQTT 5
// and MQTT 3.1.1, without goroutines, without allocating what a peer
// merely announces, and with memory proportional to what it received.
//
// Packets are the structs of github.com/eclipse/paho.golang/packets, the
// library's one packet model; the encoder and decoder are this package's
// own. A Codec (V5 or V311, chosen once per connection) encodes
// (Codec.Append) and decodes (Codec.Decode) every packet type of its
// version; the two versions share one code path and differ only where the
// protocols do. Decoding returns a Packet: the packets-model packet plus
// what that model cannot hold at a reasonable cost, the user properties
// in a compact form (UserProps) and every Subscription Identifier of a
// PUBLISH. Reader frames and decodes packets out of a Source (every
// netio.Conn is one), refusing a packet over the maximum size before
// allocating anything for it; Writer encodes and batches them and flushes
// the batch to a Sink in one write. The packets of the hot path (PUBLISH,
// the acknowledgements, PINGREQ, DISCONNECT) are encoded without
// allocating.
package wire

import "time"

// Source is what a Reader reads from: a byte stream that can be read
// without blocking and read while parked until a deadline. Every
// netio.Conn is a Source.
type Source interface {
	// ReadNow reads bytes already available, without blocking: 0, nil
	// when there are none; io.EOF (possibly wrapped) once the peer closed.
	ReadNow(p []byte) (int, error)
	// ReadWait parks until bytes arrive or the deadline passes (zero: no
	// deadline), then reads them; on timeout the error satisfies
	// errors.Is(err, os.ErrDeadlineExceeded).
	ReadWait(p []byte, deadline time.Time) (int, error)
}

// Sink is what a Writer flushes to. Every netio.Conn is a Sink.
type Sink interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
}
