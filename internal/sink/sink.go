package sink

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// StreamPrefix starts the topic filters that make the sink stream (see the
// package documentation).
const StreamPrefix = "sink/stream/"

// StreamTopic returns the filter (and topic) that makes the sink send n
// QoS 0 messages of size payload bytes after the SUBACK.
func StreamTopic(n, size int) string {
	return StreamPrefix + strconv.Itoa(n) + "/" + strconv.Itoa(size)
}

// maxPacket caps the remaining length the sink accepts; a larger packet
// closes the connection.
const maxPacket = 16 << 20

// ioBuffer is the size of each connection's bufio buffers.
const ioBuffer = 64 << 10

// streamBatch is the approximate size of one streaming write.
const streamBatch = 64 << 10

// Options configures a Sink. The zero value is a sink that sends CONNACK
// without properties.
type Options struct {
	// ReceiveMaximum, if non-zero, is announced in MQTT 5 CONNACKs (the
	// sink itself has no limit).
	ReceiveMaximum uint16
}

// Sink is a running acking sink.
type Sink struct {
	ln      net.Listener
	opts    Options
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	publish atomic.Int64 // PUBLISH packets received
	streams atomic.Int64 // PUBLISH packets streamed to clients
}

// Start starts a sink on a free port of 127.0.0.1.
func Start(opts Options) (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: listen: %w", err)
	}
	s := &Sink{ln: ln, opts: opts, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// StartT starts a sink for a test or benchmark and closes it when tb ends.
func StartT(tb testing.TB, opts Options) *Sink {
	tb.Helper()
	s, err := Start(opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr returns "127.0.0.1:PORT".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// URL returns "mqtt://127.0.0.1:PORT".
func (s *Sink) URL() string { return "mqtt://" + s.Addr() }

// Published returns the number of PUBLISH packets received from clients.
// Counts are added when a connection's input runs dry, so the figure may
// lag a connection that is still busy.
func (s *Sink) Published() int64 { return s.publish.Load() }

// Streamed returns the number of PUBLISH packets streamed to clients.
func (s *Sink) Streamed() int64 { return s.streams.Load() }

// Close stops accepting, closes every connection and returns when every
// goroutine of the sink has exited. It may be called more than once.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Sink) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// conn is one client connection.
type conn struct {
	s   *Sink
	nc  net.Conn
	br  *bufio.Reader
	buf []byte // packet body, reused

	wmu sync.Mutex // guards bw against the streaming goroutine
	bw  *bufio.Writer
	v5  bool

	streamWG sync.WaitGroup
	stop     chan struct{}
}

func (s *Sink) serve(nc net.Conn) {
	defer s.wg.Done()
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := &conn{
		s:    s,
		nc:   nc,
		br:   bufio.NewReaderSize(nc, ioBuffer),
		bw:   bufio.NewWriterSize(nc, ioBuffer),
		buf:  make([]byte, 0, 4096),
		v5:   true,
		stop: make(chan struct{}),
	}
	_ = c.run()
	close(c.stop)
	_ = nc.Close()
	c.streamWG.Wait()
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

var errClose = errors.New("sink: close")

// run reads and answers packets until the connection ends.
func (c *conn) run() error {
	var published int64
	defer func() { c.s.publish.Add(published) }()
	for {
		header, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		rem, err := readVBI(c.br)
		if err != nil {
			return err
		}
		if rem > maxPacket {
			return fmt.Errorf("sink: packet of %d bytes", rem)
		}
		body, err := c.readBody(rem)
		if err != nil {
			return err
		}
		if header>>4 == 3 {
			published++
		}
		if err := c.handle(header, body); err != nil {
			return err
		}
		if c.br.Buffered() == 0 {
			c.s.publish.Add(published)
			published = 0
			c.wmu.Lock()
			err := c.bw.Flush()
			c.wmu.Unlock()
			if err != nil {
				return err
			}
		}
	}
}

// readBody returns the next n bytes: straight from the bufio buffer when
// they are all there, else copied into c.buf.
func (c *conn) readBody(n int) ([]byte, error) {
	if n <= c.br.Buffered() {
		b, err := c.br.Peek(n)
		if err != nil {
			return nil, err
		}
		_, _ = c.br.Discard(n)
		return b, nil // valid until the next read from br
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	b := c.buf[:n]
	_, err := io.ReadFull(c.br, b)
	return b, err
}

func readVBI(br *bufio.Reader) (int, error) {
	v := 0
	for i := 0; i < 4; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= int(b&0x7F) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("sink: variable byte integer longer than 4 bytes")
}

// write2 and write4 buffer a short answer; errors surface at Flush.
func (c *conn) write2(a, b byte) {
	c.wmu.Lock()
	_ = c.bw.WriteByte(a)
	_ = c.bw.WriteByte(b)
	c.wmu.Unlock()
}

func (c *conn) write4(a, b, d, e byte) {
	c.wmu.Lock()
	_ = c.bw.WriteByte(a)
	_ = c.bw.WriteByte(b)
	_ = c.bw.WriteByte(d)
	_ = c.bw.WriteByte(e)
	c.wmu.Unlock()
}

func (c *conn) handle(header byte, body []byte) error {
	switch header >> 4 {
	case 1: // CONNECT
		return c.connect(body)
	case 3: // PUBLISH
		qos := header >> 1 & 3
		if qos == 0 {
			return nil
		}
		if len(body) < 2 {
			return errors.New("sink: short PUBLISH")
		}
		i := 2 + (int(body[0])<<8 | int(body[1]))
		if i+2 > len(body) {
			return errors.New("sink: short PUBLISH")
		}
		if qos == 1 {
			c.write4(0x40, 2, body[i], body[i+1])
		} else {
			c.write4(0x50, 2, body[i], body[i+1])
		}
	case 6: // PUBREL
		if len(body) < 2 {
			return errors.New("sink: short PUBREL")
		}
		c.write4(0x70, 2, body[0], body[1])
	case 8: // SUBSCRIBE
		return c.subscribe(body)
	case 10: // UNSUBSCRIBE
		return c.unsubscribe(body)
	case 12: // PINGREQ
		c.write2(0xD0, 0)
	case 14: // DISCONNECT
		return errClose
	}
	return nil
}

func (c *conn) connect(body []byte) error {
	// Protocol name (2-byte length + "MQTT"), then the level.
	if len(body) < 7 {
		return errors.New("sink: short CONNECT")
	}
	nameLen := int(body[0])<<8 | int(body[1])
	if 2+nameLen >= len(body) {
		return errors.New("sink: short CONNECT")
	}
	c.v5 = body[2+nameLen] == 5
	switch {
	case !c.v5:
		c.write4(0x20, 2, 0, 0)
	case c.s.opts.ReceiveMaximum != 0:
		rm := c.s.opts.ReceiveMaximum
		c.wmu.Lock()
		_, _ = c.bw.Write([]byte{0x20, 6, 0, 0, 3, 0x21, byte(rm >> 8), byte(rm)})
		c.wmu.Unlock()
	default:
		c.wmu.Lock()
		_, _ = c.bw.Write([]byte{0x20, 3, 0, 0, 0})
		c.wmu.Unlock()
	}
	return nil
}

// skipProps returns the offset past the MQTT 5 properties at body[i].
func (c *conn) skipProps(body []byte, i int) (int, error) {
	if !c.v5 {
		return i, nil
	}
	n, w := 0, 0
	for ; w < 4; w++ {
		if i+w >= len(body) {
			return 0, errors.New("sink: short properties")
		}
		b := body[i+w]
		n |= int(b&0x7F) << (7 * w)
		if b < 0x80 {
			w++
			break
		}
	}
	if i+w+n > len(body) {
		return 0, errors.New("sink: short properties")
	}
	return i + w + n, nil
}

func (c *conn) subscribe(body []byte) error {
	if len(body) < 2 {
		return errors.New("sink: short SUBSCRIBE")
	}
	i, err := c.skipProps(body, 2)
	if err != nil {
		return err
	}
	var reasons []byte
	var first string
	for i < len(body) {
		if i+2 > len(body) {
			return errors.New("sink: short SUBSCRIBE")
		}
		n := int(body[i])<<8 | int(body[i+1])
		if i+2+n+1 > len(body) {
			return errors.New("sink: short SUBSCRIBE")
		}
		if reasons == nil {
			first = string(body[i+2 : i+2+n])
		}
		reasons = append(reasons, body[i+2+n]&3)
		i += 2 + n + 1
	}
	rem := 2 + len(reasons)
	if c.v5 {
		rem++
	}
	c.wmu.Lock()
	_ = c.bw.WriteByte(0x90)
	writeVBI(c.bw, rem)
	_, _ = c.bw.Write(body[:2])
	if c.v5 {
		_ = c.bw.WriteByte(0)
	}
	_, _ = c.bw.Write(reasons)
	c.wmu.Unlock()
	if n, size, ok := parseStream(first); ok {
		c.startStream(first, n, size)
	}
	return nil
}

func (c *conn) unsubscribe(body []byte) error {
	if len(body) < 2 {
		return errors.New("sink: short UNSUBSCRIBE")
	}
	i, err := c.skipProps(body, 2)
	if err != nil {
		return err
	}
	count := 0
	for i+2 <= len(body) {
		i += 2 + (int(body[i])<<8 | int(body[i+1]))
		count++
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.bw.WriteByte(0xB0)
	if !c.v5 {
		_ = c.bw.WriteByte(2)
		_, _ = c.bw.Write(body[:2])
		return nil
	}
	writeVBI(c.bw, 3+count)
	_, _ = c.bw.Write(body[:2])
	_ = c.bw.WriteByte(0)
	for range count {
		_ = c.bw.WriteByte(0)
	}
	return nil
}

func writeVBI(w *bufio.Writer, n int) {
	for n >= 0x80 {
		_ = w.WriteByte(byte(n) | 0x80)
		n >>= 7
	}
	_ = w.WriteByte(byte(n))
}

func parseStream(filter string) (n, size int, ok bool) {
	rest, found := strings.CutPrefix(filter, StreamPrefix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	n, err1 := strconv.Atoi(a)
	size, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || n < 0 || size < 0 || size > maxPacket/2 {
		return 0, 0, false
	}
	return n, size, true
}

// encodePublish appends a QoS 0 PUBLISH without packet id.
func encodePublish(dst []byte, topic string, payload []byte, v5 bool) []byte {
	rem := 2 + len(topic) + len(payload)
	if v5 {
		rem++
	}
	dst = append(dst, 0x30)
	for n := rem; ; {
		if n < 0x80 {
			dst = append(dst, byte(n))
			break
		}
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	if v5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

// startStream sends n PUBLISH packets on topic from a goroutine of the
// connection, after what is already buffered (the SUBACK).
func (c *conn) startStream(topic string, n, size int) {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	one := encodePublish(nil, topic, payload, c.v5)
	per := max(1, streamBatch/len(one))
	batch := make([]byte, 0, per*len(one))
	for range per {
		batch = append(batch, one...)
	}
	c.streamWG.Add(1)
	go func() {
		defer c.streamWG.Done()
		// The SUBACK first, then whole batches straight to the socket.
		c.wmu.Lock()
		err := c.bw.Flush()
		c.wmu.Unlock()
		left := n
		for err == nil && left > 0 {
			k := min(left, per)
			select {
			case <-c.stop:
				return
			default:
			}
			c.wmu.Lock()
			if c.bw.Buffered() > 0 {
				err = c.bw.Flush()
			}
			if err == nil {
				_, err = c.nc.Write(batch[:k*len(one)])
			}
			c.wmu.Unlock()
			left -= k
			c.s.streams.Add(int64(k))
		}
	}()
}
