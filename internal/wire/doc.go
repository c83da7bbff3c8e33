// Package wire is the MQTT codec and framing of the event loop: it turns
// the bytes of a connection into packets and packets into bytes, for MQTT 5
// and MQTT 3.1.1, without goroutines and without allocating what a peer
// merely announces.
//
// Packets are the structs of github.com/eclipse/paho.golang/packets, the
// library's one packet model. Reader frames and decodes them out of a
// Source (every netio.Conn is one), refusing a packet over the maximum
// size before allocating anything for it; Writer encodes and batches them
// and flushes the batch to a Sink in one write. AppendPacket/Decode (MQTT 5)
// and AppendPacket311/Decode311 (MQTT 3.1.1) are the codecs underneath
// both, with allocation-free fast paths for the packets of the hot path
// (PUBLISH without properties, acks with reason 0, PINGREQ) and
// paho.golang/packets for the rest.
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
