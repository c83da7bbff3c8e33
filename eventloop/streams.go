// MQTT over several QUIC streams (EMQX's multi-stream mode): requests
// mapped to data streams by Options.QUICStreams, each stream with its own
// framing, acknowledgements on the stream of the packet they answer.

package eventloop

import (
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/state"
)

// MaxQUICDataStreams is the highest stream number Options.QUICStreams may
// return: EMQX's QUIC listener accepts 10 bidirectional streams from a
// client by default, the control stream and nine data streams.
const MaxQUICDataStreams = netio.MaxQUICStreams - 1

// dataStream is one open data stream: its framing both ways.
type dataStream struct {
	s  netio.DataStream
	rd *wire.Reader
	wr *wire.Writer
}

// inKey is a packet id the broker chose, on the stream it came on.
type inKey struct {
	stream uint8
	id     uint16
}

// streamSet is the loop's side of the data streams.
//
// Packet ids. The session (state.MqttState) has one packet-id space. For
// what the client sends that is all it takes: ids only need to be unique
// among the packets in flight on a stream, and ids unique among all in
// flight are unique on each stream; route remembers the stream of each
// one so that a PUBREL, and the replay after a reconnect, go where the
// PUBLISH went. The broker's ids are another matter: EMQX gives each data
// stream its own copy of the session, so two streams may deliver
// different messages with the same id at the same time. The session would
// take the second for a duplicate of the first (QoS 2) or acknowledge the
// wrong one (manual acks), so in multi-stream mode the broker's ids are
// translated: each (stream, id) in flight gets a local id, the broker's
// own whenever no other stream's message uses it, and acknowledgements
// are translated back and sent on that stream.
type streamSet struct {
	sc      netio.StreamConn
	data    [netio.MaxQUICStreams]*dataStream
	open    []int
	route   map[uint16]uint8 // outgoing packet id -> stream, while in flight
	local   map[inKey]uint16 // the broker's (stream, id) -> local id
	broker  map[uint16]inKey // and back
	blocked time.Time        // since when flow control holds data (zero: nothing held)
}

// multiStream reports whether the loop maps traffic to data streams.
func (l *EventLoop) multiStream() bool { return l.opts.QUICStreams != nil }

// resetStreams prepares the data streams of a new connection.
func (l *EventLoop) resetStreams() {
	ss := &l.streams
	l.retireStreams()
	ss.data = [netio.MaxQUICStreams]*dataStream{}
	ss.open = ss.open[:0]
	ss.blocked = time.Time{}
	ss.sc = nil
	if !l.multiStream() {
		return
	}
	if sc, ok := l.conn.(netio.StreamConn); ok {
		ss.sc = sc
	}
	if ss.route == nil {
		ss.route = make(map[uint16]uint8)
		ss.local = make(map[inKey]uint16)
		ss.broker = make(map[uint16]inKey)
	}
}

// sessionLost forgets the stream routes and translations of a session the
// broker no longer has.
func (l *EventLoop) streamsSessionLost() {
	ss := &l.streams
	clear(ss.route)
	clear(ss.local)
	clear(ss.broker)
}

// streamFor returns the stream a request goes on.
func (l *EventLoop) streamFor(r Request) (int, error) {
	if !l.multiStream() || r == nil {
		return 0, nil
	}
	i := l.opts.QUICStreams(r)
	if i < 0 || i > MaxQUICDataStreams {
		return 0, fmt.Errorf("%w: Options.QUICStreams chose stream %d (0 to %d)", ErrInvalidRequest, i, MaxQUICDataStreams)
	}
	if i > 0 && l.streams.sc == nil {
		return 0, nil // not QUIC: everything on the one stream
	}
	return i, nil
}

// sendPending writes a packet taken from the queue on its stream and
// records the stream of its packet id. An error for which refused is true
// fails only the request.
func (l *EventLoop) sendPending(p state.Pending, pkt packets.Packet) error {
	if !l.multiStream() {
		return l.write(pkt)
	}
	i, err := l.streamFor(requestOf(p))
	if err != nil {
		return &streamError{err}
	}
	if err := l.writeOn(i, pkt); err != nil {
		return err
	}
	if id := packetID(pkt); id != 0 {
		l.streams.route[id] = uint8(i)
	}
	return nil
}

// streamError is a request mapped to no valid stream: refused, like a
// packet the encoder refuses.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// writeReplay writes a packet of the session's replay (a PUBLISH or a
// PUBREL) on the stream its flow started on.
func (l *EventLoop) writeReplay(p packets.Packet) error {
	if !l.multiStream() {
		return l.write(p)
	}
	id := packetID(p)
	i, ok := l.streams.route[id]
	if !ok {
		if pub, isPub := p.(*packets.Publish); isPub {
			n, err := l.streamFor(publishRequestFrom(pub))
			if err == nil {
				i = uint8(n)
			}
		}
		l.streams.route[id] = i
	}
	if int(i) > 0 && l.streams.sc == nil {
		i = 0
	}
	return l.writeOn(int(i), p)
}

// packetID returns the packet id of a packet that has one (0 otherwise).
func packetID(p packets.Packet) uint16 {
	switch p := p.(type) {
	case *packets.Publish:
		return p.PacketID
	case *packets.Pubrel:
		return p.PacketID
	case *packets.Subscribe:
		return p.PacketID
	case *packets.Unsubscribe:
		return p.PacketID
	}
	return 0
}

// doneRoute forgets the stream of a flow that completed.
func (l *EventLoop) doneRoute(id uint16) {
	if l.streams.route != nil {
		delete(l.streams.route, id)
	}
}

// writeOn encodes a packet for stream i (0: the control stream), opening
// a data stream on first use.
func (l *EventLoop) writeOn(i int, p packets.Packet) error {
	if i == 0 {
		return l.write(p)
	}
	ds, err := l.dataStream(i)
	if err != nil {
		l.lost(err)
		return err
	}
	if err := ds.wr.Append(p); err != nil {
		if refused(err, p) {
			return err
		}
		l.lost(fmt.Errorf("encoding %T for stream %d: %w", p, i, err))
		return err
	}
	if l.dbg {
		l.logPacketOn("out", i, p)
	}
	if ds.wr.Buffered() >= flushThreshold {
		if !l.flushStreams(time.Now()) {
			return ErrConnectionLost
		}
	}
	return nil
}

// dataStream returns data stream i, opening it on first use.
func (l *EventLoop) dataStream(i int) (*dataStream, error) {
	ss := &l.streams
	if ds := ss.data[i]; ds != nil {
		return ds, nil
	}
	s, err := ss.sc.DataStream(i)
	if err != nil {
		return nil, fmt.Errorf("opening data stream %d to %s: %w", i, l.server, err)
	}
	lim := l.st.Limits()
	ds := &dataStream{s: s, rd: wire.NewReader(int(l.opts.MaxPacketSize)), wr: wire.NewWriter(int(lim.MaximumPacketSize))}
	// The connection's codec (the control stream's).
	ds.rd.SetCodec(l.rd.Codec())
	ds.wr.SetCodec(l.rd.Codec())
	ss.data[i] = ds
	ss.open = append(ss.open, i)
	return ds, nil
}

// flushStreams writes what the data streams have buffered, as far as flow
// control lets them without blocking. It returns false if the connection
// ended.
func (l *EventLoop) flushStreams(now time.Time) bool {
	ss := &l.streams
	held := false
	for _, i := range ss.open {
		ds := ss.data[i]
		before := ds.wr.Buffered()
		if before == 0 {
			continue
		}
		done, err := ds.wr.FlushNow(ds.s)
		if err != nil {
			l.lost(fmt.Errorf("writing to %s: %w", l.server, err))
			return false
		}
		if ds.wr.Buffered() < before {
			l.ka.Sent(now)
		}
		if !done {
			held = true
		}
	}
	switch {
	case !held:
		ss.blocked = time.Time{}
	case ss.blocked.IsZero():
		ss.blocked = now
	case now.Sub(ss.blocked) >= l.opts.WriteTimeout:
		l.lost(fmt.Errorf("writing to %s: the broker's receive window stayed full for %v: %w", l.server, l.opts.WriteTimeout, errStreamBlocked))
		return false
	}
	return true
}

var errStreamBlocked = errors.New("data stream blocked by flow control")

// streamsWake returns when the loop must wake for data held by flow
// control (the write timeout), or the zero time.
func (l *EventLoop) streamsWake() time.Time {
	if l.streams.blocked.IsZero() {
		return time.Time{}
	}
	return l.streams.blocked.Add(l.opts.WriteTimeout)
}

// readStreams reads and handles what the data streams have. It reports
// whether anything arrived, and false in ok if the connection ended.
func (l *EventLoop) readStreams(now time.Time) (got, ok bool) {
	ss := &l.streams
	for _, i := range ss.open {
		ds := ss.data[i]
		n, err := ds.rd.FillNow(ds.s)
		if n > 0 {
			got = true
			l.ka.Received(now) // bytes are proof of life (see arrived)
			l.rxAt = now
		}
		if !l.handleFrom(ds.rd, i, now) {
			return got, false
		}
		if err != nil {
			l.lost(fmt.Errorf("reading data stream %d from %s: %w", i, l.server, err))
			return got, false
		}
	}
	return got, true
}

// inbound translates the packet id of a packet the broker started a flow
// with (PUBLISH at QoS 1 or 2, PUBREL) from its stream's id space to the
// session's (see streamSet).
func (l *EventLoop) inbound(cp *packets.ControlPacket, from int) {
	if !l.multiStream() {
		return
	}
	ss := &l.streams
	switch p := cp.Content.(type) {
	case *packets.Publish:
		if p.QoS == 0 {
			return
		}
		k := inKey{uint8(from), p.PacketID}
		if v, ok := ss.local[k]; ok {
			p.PacketID = v
			return
		}
		v := p.PacketID
		for {
			if _, taken := ss.broker[v]; !taken {
				break
			}
			v++
			if v == 0 {
				v = 1
			}
		}
		ss.local[k], ss.broker[v] = v, k
		p.PacketID = v
	case *packets.Pubrel:
		if v, ok := ss.local[inKey{uint8(from), p.PacketID}]; ok {
			p.PacketID = v
		}
	}
}

// reply writes the session's answer to a packet that arrived on stream
// from: an acknowledgement of the broker's flow goes back, under the
// broker's id, on the stream that flow is on (which for a manual ack is
// not known from anything else).
func (l *EventLoop) reply(p packets.Packet, from int) error {
	if !l.multiStream() {
		return l.write(p)
	}
	ss := &l.streams
	var id *uint16
	release := false
	switch p := p.(type) {
	case *packets.Puback:
		id, release = &p.PacketID, true
	case *packets.Pubrec:
		id, release = &p.PacketID, p.ReasonCode >= 0x80
	case *packets.Pubcomp:
		id, release = &p.PacketID, true
	}
	if id != nil {
		if k, ok := ss.broker[*id]; ok {
			if release {
				delete(ss.broker, *id)
				delete(ss.local, k)
			}
			*id, from = k.id, int(k.stream)
		}
	}
	if from > 0 && ss.sc == nil {
		from = 0
	}
	return l.writeOn(from, p)
}
