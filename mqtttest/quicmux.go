package mqtttest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// MQTT over QUIC with data streams, following EMQX's multi-stream mode
// (EMQX documentation, "MQTT over QUIC: Features and Benefits", and EMQX
// EIP 0023): the first client-initiated bidirectional stream is the
// control stream; the client may open more (data streams), which carry
// PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE
// and UNSUBACK. The broker
//
//   - answers a PUBLISH (PUBACK, PUBREC, PUBCOMP) on the stream it came on;
//   - answers SUBSCRIBE and UNSUBSCRIBE on the stream they came on;
//   - delivers messages matching a subscription on the stream the
//     subscription was made on (the most recent one, when filters on
//     several streams match; the control stream when none does), and
//     sends PUBREL for a delivery on the stream of its PUBLISH;
//   - keeps CONNACK, PINGRESP, DISCONNECT and AUTH on the control stream;
//   - handles data-stream packets only after CONNACK (EMQX activates data
//     streams once the connection is accepted).
//
// mochi serves one net.Conn per client, so quicMux merges the streams
// into one: a goroutine per stream frames what it reads into whole MQTT
// packets and queues them for mochi's reads, and mochi's writes are framed
// and routed to the stream the rules above choose. One difference from
// EMQX: EMQX gives each data stream its own copy of the session, hence
// its own packet-id space for deliveries; mochi has one session per
// client, so delivery ids are unique across the streams here.

// muxMaxPacket bounds a packet the mux frames (mochi applies the real
// Maximum Packet Size after).
const muxMaxPacket = 256 << 20

// quicMux is the QUIC connection of one client as a net.Conn for mochi.
type quicMux struct {
	qc      *quic.Conn
	control *quic.Stream
	l       *quicNetListener

	in       chan []byte   // whole packets (or runs of them) for Read
	eof      chan struct{} // closed when the control stream ended
	done     chan struct{} // closed by Close
	accepted chan struct{} // closed once CONNACK was written

	rmu     sync.Mutex
	pending []byte // the rest of the chunk Read is serving
	rdl     time.Time

	wmu  sync.Mutex
	wbuf []byte

	mu        sync.Mutex
	version   byte // MQTT version from CONNECT (4 or 5)
	streams   map[quic.StreamID]*quic.Stream
	pubIn     map[uint16]*quic.Stream // client publish id -> its stream
	reqIn     map[uint16]*quic.Stream // SUBSCRIBE/UNSUBSCRIBE id -> its stream
	pubOut    map[uint16]*quic.Stream // delivery id -> its stream
	subs      []muxSub                // subscriptions, most recent last
	accepted1 sync.Once

	// With Options.QUICPerStreamIDs: each data stream's deliveries are
	// numbered on their own; mochi's id of each, by stream and local id,
	// and back.
	toMochi   map[*quic.Stream]map[uint16]uint16
	fromMochi map[uint16]streamID
	nextID    map[*quic.Stream]uint16

	once sync.Once
}

// streamID is a packet id on a stream.
type streamID struct {
	stream *quic.Stream
	id     uint16
}

// muxSub is a subscription and the stream it was made on.
type muxSub struct {
	filter string
	stream *quic.Stream
}

func newQUICMux(qc *quic.Conn, control *quic.Stream, l *quicNetListener) *quicMux {
	m := &quicMux{
		qc: qc, control: control, l: l,
		in:       make(chan []byte, 64),
		eof:      make(chan struct{}),
		done:     make(chan struct{}),
		accepted: make(chan struct{}),
		version:  5,
		streams:  map[quic.StreamID]*quic.Stream{control.StreamID(): control},
		pubIn:    map[uint16]*quic.Stream{},
		reqIn:    map[uint16]*quic.Stream{},
		pubOut:   map[uint16]*quic.Stream{},
	}
	if l.perStreamIDs {
		m.toMochi = map[*quic.Stream]map[uint16]uint16{}
		m.fromMochi = map[uint16]streamID{}
		m.nextID = map[*quic.Stream]uint16{}
	}
	l.wg.Add(2)
	go m.readStream(control, true)
	go m.acceptData()
	return m
}

// acceptData accepts the client's data streams until the connection ends.
func (m *quicMux) acceptData() {
	defer m.l.wg.Done()
	for {
		st, err := m.qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		m.mu.Lock()
		m.streams[st.StreamID()] = st
		m.mu.Unlock()
		m.l.wg.Add(1)
		go m.readStream(st, false)
	}
}

// readStream frames what one stream carries into whole packets, notes
// where each came from, and queues them for mochi. A data stream waits
// for CONNACK first. The end of the control stream ends the connection
// for mochi; the end of a data stream only ends that stream.
func (m *quicMux) readStream(st *quic.Stream, control bool) {
	defer m.l.wg.Done()
	if !control {
		select {
		case <-m.accepted:
		case <-m.done:
			return
		}
	}
	buf := make([]byte, 0, 64<<10)
	chunk := make([]byte, 64<<10)
	for {
		n, err := st.Read(chunk)
		buf = append(buf, chunk[:n]...)
		whole := 0
		for {
			size, ok := packetSize(buf[whole:])
			if !ok || size > muxMaxPacket {
				if size > muxMaxPacket {
					err = errors.New("packet too large")
				}
				break
			}
			m.note(buf[whole:whole+size], st)
			whole += size
		}
		if whole > 0 {
			out := make([]byte, whole)
			copy(out, buf[:whole])
			select {
			case m.in <- out:
			case <-m.done:
				return
			}
			buf = append(buf[:0], buf[whole:]...)
		}
		if err != nil {
			if control {
				close(m.eof) // mochi reads EOF
			}
			return
		}
	}
}

// note records what routing needs from a packet the client sent.
func (m *quicMux) note(pk []byte, st *quic.Stream) {
	typ := pk[0] >> 4
	body := pk[headerLen(pk):]
	m.mu.Lock()
	defer m.mu.Unlock()
	switch typ {
	case 1: // CONNECT: protocol name, then the version
		if len(body) >= 2 {
			if n := int(binary.BigEndian.Uint16(body)); len(body) > 2+n {
				m.version = body[2+n]
			}
		}
	case 4, 5, 7: // PUBACK, PUBREC, PUBCOMP of a delivery
		if m.toMochi != nil && st != m.control && len(body) >= 2 {
			local := binary.BigEndian.Uint16(body)
			if id, ok := m.toMochi[st][local]; ok {
				binary.BigEndian.PutUint16(body, id)
				if typ != 5 {
					delete(m.toMochi[st], local)
					delete(m.fromMochi, id)
				}
			}
		}
	case 3: // PUBLISH
		if qos := (pk[0] >> 1) & 3; qos > 0 {
			if _, rest, ok := muxString(body); ok && len(rest) >= 2 {
				m.pubIn[binary.BigEndian.Uint16(rest)] = st
			}
		}
	case 8, 10: // SUBSCRIBE, UNSUBSCRIBE
		if len(body) < 2 {
			return
		}
		m.reqIn[binary.BigEndian.Uint16(body)] = st
		rest := body[2:]
		if m.version == 5 {
			n, k, ok := varint(rest)
			if !ok || k+n > len(rest) {
				return
			}
			rest = rest[k+n:]
		}
		for len(rest) > 0 {
			f, r, ok := muxString(rest)
			if !ok {
				return
			}
			rest = r
			if typ == 8 {
				if len(rest) == 0 {
					return
				}
				rest = rest[1:] // subscription options
				m.subs = append(m.subs, muxSub{filter: f, stream: st})
				continue
			}
			for i := 0; i < len(m.subs); i++ {
				if m.subs[i].filter == f && m.subs[i].stream == st {
					m.subs = append(m.subs[:i], m.subs[i+1:]...)
					i--
				}
			}
		}
	}
}

// route chooses the stream of a packet mochi writes.
func (m *quicMux) route(pk []byte) *quic.Stream {
	typ := pk[0] >> 4
	body := pk[headerLen(pk):]
	m.mu.Lock()
	defer m.mu.Unlock()
	id := func() uint16 {
		if len(body) < 2 {
			return 0
		}
		return binary.BigEndian.Uint16(body)
	}
	var st *quic.Stream
	switch typ {
	case 2: // CONNACK
		m.accepted1.Do(func() { close(m.accepted) })
	case 3: // PUBLISH: the stream of the latest matching subscription
		topic, rest, ok := muxString(body)
		if !ok {
			break
		}
		for i := len(m.subs) - 1; i >= 0; i-- {
			if matchTopic(m.subs[i].filter, topic) {
				st = m.subs[i].stream
				break
			}
		}
		if qos := (pk[0] >> 1) & 3; qos > 0 && len(rest) >= 2 {
			m.pubOut[binary.BigEndian.Uint16(rest)] = st
			if m.toMochi != nil && st != nil {
				m.localID(st, rest)
			}
		}
	case 4, 7: // PUBACK, PUBCOMP: the flow ends
		st = m.pubIn[id()]
		delete(m.pubIn, id())
	case 5: // PUBREC
		st = m.pubIn[id()]
	case 6: // PUBREL of a delivery
		st = m.pubOut[id()]
		delete(m.pubOut, id())
		if sid, ok := m.fromMochi[id()]; ok && m.toMochi != nil {
			binary.BigEndian.PutUint16(body, sid.id)
		}
	case 9, 11: // SUBACK, UNSUBACK
		st = m.reqIn[id()]
		delete(m.reqIn, id())
	}
	if st == nil {
		return m.control
	}
	return st
}

// localID renumbers a delivery on data stream st, whose packet id is at
// the start of b, in the stream's own id space (Options.QUICPerStreamIDs).
// A resend keeps its number. Called with mu held.
func (m *quicMux) localID(st *quic.Stream, b []byte) {
	id := binary.BigEndian.Uint16(b)
	if sid, ok := m.fromMochi[id]; ok && sid.stream == st {
		binary.BigEndian.PutUint16(b, sid.id)
		return
	}
	ids := m.toMochi[st]
	if ids == nil {
		ids = map[uint16]uint16{}
		m.toMochi[st] = ids
	}
	local := m.nextID[st]
	for {
		local++
		if local == 0 {
			local = 1
		}
		if _, used := ids[local]; !used {
			break
		}
	}
	m.nextID[st] = local
	ids[local] = id
	m.fromMochi[id] = streamID{st, local}
	binary.BigEndian.PutUint16(b, local)
}

// Read implements net.Conn: whole packets from any stream.
func (m *quicMux) Read(p []byte) (int, error) {
	m.rmu.Lock()
	defer m.rmu.Unlock()
	if len(m.pending) == 0 {
		var timeout <-chan time.Time
		if !m.rdl.IsZero() {
			d := time.Until(m.rdl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case chunk := <-m.in:
			m.pending = chunk
		case <-m.eof:
			select {
			case chunk := <-m.in: // sent before the end
				m.pending = chunk
			default:
				return 0, io.EOF
			}
		case <-m.done:
			return 0, net.ErrClosed
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, m.pending)
	m.pending = m.pending[n:]
	return n, nil
}

// Write implements net.Conn: it frames what mochi writes and sends each
// packet on its stream.
func (m *quicMux) Write(p []byte) (int, error) {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	m.wbuf = append(m.wbuf, p...)
	for {
		size, ok := packetSize(m.wbuf)
		if !ok {
			return len(p), nil
		}
		pk := m.wbuf[:size]
		if _, err := m.route(pk).Write(pk); err != nil {
			return 0, err
		}
		m.wbuf = m.wbuf[size:]
		if len(m.wbuf) == 0 {
			m.wbuf = nil
		}
	}
}

// LocalAddr implements net.Conn.
func (m *quicMux) LocalAddr() net.Addr { return m.qc.LocalAddr() }

// RemoteAddr implements net.Conn.
func (m *quicMux) RemoteAddr() net.Addr { return m.qc.RemoteAddr() }

// SetDeadline implements net.Conn.
func (m *quicMux) SetDeadline(t time.Time) error {
	_ = m.SetReadDeadline(t)
	return m.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn. It applies to the next Read.
func (m *quicMux) SetReadDeadline(t time.Time) error {
	m.rmu.Lock()
	m.rdl = t
	m.rmu.Unlock()
	return nil
}

// SetWriteDeadline implements net.Conn.
func (m *quicMux) SetWriteDeadline(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.streams {
		_ = st.SetWriteDeadline(t)
	}
	return nil
}

// Close implements net.Conn: it ends the streams after what was written
// (FIN) and stops reading them. A goroutine of the listener then waits
// until the client closes the connection (at most quicCloseLinger, so that
// what the broker wrote last, a DISCONNECT, is delivered) and closes the
// QUIC connection with application error code 0. Close itself does not
// wait: mochi closes the old connection of a session taken over before it
// answers the new one, and a client whose old path went silent would
// otherwise hold up its own reconnection for the whole linger.
func (m *quicMux) Close() error {
	m.once.Do(func() {
		close(m.done)
		m.mu.Lock()
		for _, st := range m.streams {
			_ = st.Close()
			st.CancelRead(0)
		}
		m.mu.Unlock()
		m.l.wg.Add(1)
		go func() {
			defer m.l.wg.Done()
			t := time.NewTimer(quicCloseLinger)
			select {
			case <-m.qc.Context().Done():
			case <-t.C:
			case <-m.l.done:
			}
			t.Stop()
			_ = m.qc.CloseWithError(0, "")
		}()
	})
	return nil
}

// packetSize returns the size of the MQTT packet at the start of b, fixed
// header included, if b holds all of it.
func packetSize(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	n, k, ok := varint(b[1:])
	if !ok {
		return 0, false
	}
	size := 1 + k + n
	return size, len(b) >= size
}

// headerLen returns the length of the fixed header of a whole packet.
func headerLen(pk []byte) int {
	_, k, _ := varint(pk[1:])
	return 1 + k
}

// varint decodes an MQTT variable byte integer: the value, its length.
func varint(b []byte) (int, int, bool) {
	v, mul := 0, 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
		mul *= 128
	}
	return 0, 0, false
}

// muxString reads a length-prefixed string.
func muxString(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

// matchTopic reports whether a topic name matches a subscription filter
// (MQTT 5 section 4.7; "$share/group/" is stripped from shared ones).
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(filter, "$share/") {
		parts := strings.SplitN(filter, "/", 3)
		if len(parts) < 3 {
			return false
		}
		filter = parts[2]
	}
	if strings.HasPrefix(topic, "$") && !strings.HasPrefix(filter, "$") {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}
