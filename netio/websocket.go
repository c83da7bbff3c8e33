package netio

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// WebSocketSubprotocol is the subprotocol MQTT over WebSocket requests in
// the upgrade and requires the server to select (MQTT 5.0, section 6).
const WebSocketSubprotocol = "mqtt"

// ErrWebSocketProtocol is wrapped by the errors of a WebSocket connection
// whose server broke the WebSocket rules or the MQTT-over-WebSocket ones:
// a text frame, a masked frame, reserved bits or opcodes, a bad
// fragmentation, an oversized control frame or length, or an upgrade that
// did not select the subprotocol "mqtt".
var ErrWebSocketProtocol = errors.New("websocket protocol error")

const (
	// wsWriteChunk is the largest piece of a frame's payload masked and
	// written at once; a Write of more goes out as one frame in several
	// writes of the underlying connection, so the masking buffer stays
	// small whatever the size of the packets.
	wsWriteChunk = 64 << 10
	// wsControlWriteTimeout bounds the write of a pong or close reply made
	// while reading.
	wsControlWriteTimeout = 5 * time.Second
)

// dialWebSocket dials ws:// (TCP) and wss:// (TLS over TCP), then upgrades
// the connection to WebSocket.
func dialWebSocket(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	nc, err := dialNet(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	c := WrapConn(nc)
	if u.Scheme == "wss" {
		tc, err := handshakeTLS(ctx, c, tlsConfigFor(u, opts.TLS))
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c = tc
	}
	wc, err := upgradeWebSocket(ctx, c, u, opts.Header)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return wc, nil
}

// upgradeWebSocket sends the HTTP upgrade request for u over inner
// (requesting the subprotocol "mqtt", with the user's extra header),
// checks the answer, and returns the Conn that carries the MQTT byte
// stream in binary WebSocket frames. The handshake is bounded by ctx's
// deadline; cancelling ctx during the handshake closes inner. On error
// inner is left open for the caller to close. The returned Conn owns
// inner; its Transport is "wss" for a wss:// URL and "ws" otherwise.
func upgradeWebSocket(ctx context.Context, inner Conn, u *url.URL, header http.Header) (Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	d := ws.Dialer{Protocols: []string{WebSocketSubprotocol}, Host: wsHost(u)}
	if len(header) > 0 {
		h := header.Clone()
		for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
			if _, ok := h[k]; ok {
				return nil, fmt.Errorf("websocket upgrade: header %s is set by the transport and cannot be overridden", k)
			}
		}
		if host := h.Get("Host"); host != "" {
			d.Host = host
		}
		h.Del("Host")
		d.Header = ws.HandshakeHeaderHTTP(h)
	}

	deadline, _ := ctx.Deadline()
	if err := inner.SetWriteDeadline(deadline); err != nil {
		return nil, fmt.Errorf("websocket upgrade: set write deadline: %w", err)
	}
	// A cancelled context cannot interrupt a parked read without another
	// goroutine; context.AfterFunc runs one only if ctx is cancelled while
	// the handshake is under way, and it just closes the connection.
	stop := context.AfterFunc(ctx, func() { _ = inner.Close() })
	br, hs, err := d.Upgrade(&streamConn{c: inner, readDeadline: deadline}, u)
	if !stop() {
		if err == nil {
			err = net.ErrClosed
		}
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if err == nil {
		err = inner.SetWriteDeadline(time.Time{})
	}
	var pending []byte
	if br != nil {
		if err == nil && br.Buffered() > 0 {
			pending = make([]byte, br.Buffered())
			_, _ = io.ReadFull(br, pending)
		}
		ws.PutReader(br)
	}
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("websocket upgrade of %s: server answered HTTP %d instead of 101 Switching Protocols", u.Path, int(se))
		}
		return nil, fmt.Errorf("websocket upgrade of %s: %w", u.Path, err)
	}
	if hs.Protocol != WebSocketSubprotocol {
		return nil, fmt.Errorf("%w: websocket upgrade of %s: the server did not select the subprotocol %q", ErrWebSocketProtocol, u.Path, WebSocketSubprotocol)
	}
	transport := "ws"
	if u.Scheme == "wss" {
		transport = "wss"
	}
	return newWSConn(inner, transport, pending), nil
}

// wsHost is the Host header of the upgrade: the URL's host, without the
// port when it is the scheme's default (ParseServer always adds one).
func wsHost(u *url.URL) string {
	if (u.Scheme == "ws" && u.Port() == DefaultWSPort) || (u.Scheme == "wss" && u.Port() == DefaultWSSPort) {
		h := u.Hostname()
		if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
			return "[" + h + "]"
		}
		return h
	}
	return u.Host
}

// wsConn is the Conn of an upgraded WebSocket connection: the MQTT bytes
// travel in binary frames over inner. Reads decode frames in place in the
// caller's buffer, so the only bytes it ever holds back are those the
// server sent right behind its upgrade answer (pending), which ReadNow
// returns before it reads inner again: after Arm and ReadNow, nothing
// decoded waits behind a Readiness that will not fire.
type wsConn struct {
	inner     Conn
	transport string
	pending   []byte
	dec       frameDecoder
	readErr   error // sticky: returned once the payload before it was

	wbuf          []byte // header and masked payload of the frame being written
	mask          *rand.ChaCha8
	writeDeadline time.Time // as last set by the caller
	closed        atomic.Bool
}

func newWSConn(inner Conn, transport string, pending []byte) *wsConn {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails
	c := &wsConn{inner: inner, transport: transport, pending: pending, mask: rand.NewChaCha8(seed)}
	c.dec.onControl = c.control
	return c
}

// ReadNow implements Conn: it decodes what inner has without blocking and
// returns the MQTT bytes it carried. Frames holding no MQTT bytes (ping,
// pong, a frame header alone) are consumed and inner read again, until it
// has nothing more.
func (c *wsConn) ReadNow(p []byte) (int, error) {
	return c.read(p, c.inner.ReadNow, true)
}

// ReadWait implements Conn: it parks in inner until MQTT bytes arrive or
// the deadline passes.
func (c *wsConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	return c.read(p, func(p []byte) (int, error) { return c.inner.ReadWait(p, deadline) }, false)
}

// read fills p with wire bytes (first those that came with the upgrade
// answer, then from fill) and decodes them until some MQTT bytes are at
// the front of p, an error happens, or, if stopWhenDry, fill has nothing.
func (c *wsConn) read(p []byte, fill func([]byte) (int, error), stopWhenDry bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	for {
		var n int
		var err error
		if len(c.pending) > 0 {
			n = copy(p, c.pending)
			c.pending = c.pending[n:]
		} else {
			n, err = fill(p)
		}
		m, derr := c.decodeResult(p, n, err)
		if m > 0 || derr != nil || (stopWhenDry && n == 0) {
			return m, derr
		}
	}
}

// decodeResult decodes the n wire bytes read into p, whose read ended with
// err, and returns the MQTT bytes now at the front of p. An error is
// returned only once the payload decoded before it has been returned.
func (c *wsConn) decodeResult(p []byte, n int, err error) (int, error) {
	m, derr := c.dec.decode(p[:n])
	switch {
	case derr != nil:
		if !errors.Is(derr, io.EOF) {
			derr = fmt.Errorf("netio: %s: %w", c.transport, derr)
		}
		c.readErr = derr
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		c.readErr = err
	case err != nil:
		if m > 0 {
			return m, nil
		}
		return 0, err // a timeout is not sticky
	}
	if m > 0 {
		return m, nil
	}
	return 0, c.readErr
}

// control answers the control frames the decoder completes: a ping with a
// pong carrying its payload, a close with a close echoing its status code.
func (c *wsConn) control(op ws.OpCode, payload []byte) error {
	switch op {
	case ws.OpPing:
		return c.writeControl(ws.OpPong, payload)
	case ws.OpClose:
		if len(payload) > 2 {
			payload = payload[:2]
		}
		// The peer may already have closed its side: a failed reply does
		// not change the outcome, which is io.EOF.
		_ = c.writeControl(ws.OpClose, payload)
	}
	return nil
}

// writeControl writes a control frame under a deadline of its own (the
// caller's may be long past), then restores the caller's deadline.
func (c *wsConn) writeControl(op ws.OpCode, payload []byte) error {
	if err := c.inner.SetWriteDeadline(time.Now().Add(wsControlWriteTimeout)); err != nil {
		return err
	}
	_, err := c.writeFrame(op, payload)
	if derr := c.inner.SetWriteDeadline(c.writeDeadline); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("writing %s reply: %w", opName(op), err)
	}
	return nil
}

// Write implements Conn: p goes out as one masked binary frame.
func (c *wsConn) Write(p []byte) (int, error) {
	n, err := c.writeFrame(ws.OpBinary, p)
	if err != nil {
		return n, fmt.Errorf("netio: %s write: %w", c.transport, err)
	}
	return n, nil
}

// writeFrame writes one final, masked frame with payload p and returns how
// many bytes of p were written. The frame's header and first payload
// chunk share one write of inner.
func (c *wsConn) writeFrame(op ws.OpCode, p []byte) (int, error) {
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], uint32(c.mask.Uint64()))
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: mask}
	hn := ws.HeaderSize(h)
	if c.wbuf == nil {
		c.wbuf = make([]byte, 0, ws.MaxHeaderSize+wsWriteChunk)
	}
	buf := appendFrameHeader(c.wbuf[:0], h)
	written := 0
	for first := true; first || written < len(p); first = false {
		k := min(len(p)-written, wsWriteChunk)
		start := len(buf)
		buf = append(buf, p[written:written+k]...)
		ws.Cipher(buf[start:], mask, written)
		n, err := c.inner.Write(buf)
		if err != nil {
			if first {
				n -= hn
			}
			return written + max(n, 0), err
		}
		written += k
		buf = c.wbuf[:0]
	}
	return written, nil
}

// appendFrameHeader appends the wire form of h (the same bytes as
// ws.WriteHeader, without its allocation).
func appendFrameHeader(b []byte, h ws.Header) []byte {
	b0 := byte(h.OpCode) | h.Rsv<<4
	if h.Fin {
		b0 |= 0x80
	}
	var mbit byte
	if h.Masked {
		mbit = 0x80
	}
	switch {
	case h.Length < 126:
		b = append(b, b0, mbit|byte(h.Length))
	case h.Length <= 0xffff:
		b = append(b, b0, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(h.Length))
	default:
		b = append(b, b0, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(h.Length))
	}
	if h.Masked {
		b = append(b, h.Mask[:]...)
	}
	return b
}

// Arm implements Conn by arming inner: every byte wsConn returns comes
// from inner, apart from those ReadNow returns first (see wsConn).
func (c *wsConn) Arm() (Readiness, error) { return c.inner.Arm() }

// Disarm implements Conn.
func (c *wsConn) Disarm() { c.inner.Disarm() }

// SetWriteInterrupt implements WriteInterrupter when the inner Conn does.
func (c *wsConn) SetWriteInterrupt(stop func() bool) {
	if wi, ok := c.inner.(WriteInterrupter); ok {
		wi.SetWriteInterrupt(stop)
	}
}

// SetWriteDeadline implements Conn.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline = t
	return c.inner.SetWriteDeadline(t)
}

// Transport implements Conn: "ws" or "wss".
func (c *wsConn) Transport() string { return c.transport }

// Close implements Conn by closing inner. It sends no WebSocket close
// frame: Close may run on another goroutine while the loop writes, and the
// MQTT DISCONNECT written before it is the graceful end.
func (c *wsConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	return c.inner.Close()
}

// frameDecoder turns the bytes of server-to-client WebSocket frames into
// the MQTT byte stream, incrementally: decode takes whatever bytes arrived
// (half a header, several frames, ...) and keeps the state between calls.
// It allocates nothing: the payload of binary and continuation frames is
// moved to the front of the buffer it decodes, and control frames, at
// most 125 bytes, are gathered in a fixed array.
type frameDecoder struct {
	hdr   [ws.MaxHeaderSize]byte
	hn    int // header bytes gathered
	inHdr bool

	op   ws.OpCode
	fin  bool
	left uint64 // payload bytes of the current frame still to come

	fragmented bool // a binary message without FIN is under way

	ctl [ws.MaxControlFramePayloadSize]byte
	cn  int

	err error // sticky

	// onControl is called with every complete ping, pong and close frame.
	// Its payload argument is valid only during the call. An error ends
	// the stream.
	onControl func(op ws.OpCode, payload []byte) error
}

// decode consumes b, moves the MQTT payload it carried to b[:n] and
// returns n. The error is io.EOF after a close frame, and otherwise wraps
// ErrWebSocketProtocol or comes from onControl; payload before the error
// is still returned, and every later call returns the same error.
func (d *frameDecoder) decode(b []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	w, i := 0, 0
	for i < len(b) {
		if d.left == 0 && !d.inHdr {
			d.inHdr, d.hn = true, 0
		}
		if d.inHdr {
			for d.hn < d.headerLen() && i < len(b) {
				d.hdr[d.hn] = b[i]
				d.hn++
				i++
			}
			if d.hn < d.headerLen() {
				break
			}
			d.inHdr = false
			if err := d.startFrame(); err != nil {
				d.err = err
				return w, err
			}
			if d.left == 0 {
				if err := d.endFrame(); err != nil {
					d.err = err
					return w, err
				}
			}
			continue
		}
		k := int(min(uint64(len(b)-i), d.left))
		if d.op.IsControl() {
			d.cn += copy(d.ctl[d.cn:], b[i:i+k])
		} else {
			w += copy(b[w:], b[i:i+k])
		}
		i += k
		d.left -= uint64(k)
		if d.left == 0 {
			if err := d.endFrame(); err != nil {
				d.err = err
				return w, err
			}
		}
	}
	return w, nil
}

// headerLen is the length of the frame header being gathered, as far as
// its first two bytes tell.
func (d *frameDecoder) headerLen() int {
	if d.hn < 2 {
		return 2
	}
	n := 2
	switch d.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if d.hdr[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// startFrame checks the gathered header and starts its frame.
func (d *frameDecoder) startFrame() error {
	b0, b1 := d.hdr[0], d.hdr[1]
	d.fin = b0&0x80 != 0
	d.op = ws.OpCode(b0 & 0x0f)
	d.cn = 0
	length := uint64(b1 & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(d.hdr[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(d.hdr[2:10])
		if length>>63 != 0 {
			return fmt.Errorf("%w: frame length %d (the most significant bit must be 0)", ErrWebSocketProtocol, length)
		}
	}
	d.left = length
	switch {
	case b0&0x70 != 0:
		return fmt.Errorf("%w: reserved bits set (0x%02x) with no extension negotiated", ErrWebSocketProtocol, b0&0x70)
	case b1&0x80 != 0:
		return fmt.Errorf("%w: masked frame from the server", ErrWebSocketProtocol)
	case d.op.IsReserved():
		return fmt.Errorf("%w: reserved opcode 0x%x", ErrWebSocketProtocol, byte(d.op))
	case d.op.IsControl():
		if !d.fin {
			return fmt.Errorf("%w: fragmented %s frame", ErrWebSocketProtocol, opName(d.op))
		}
		if length > ws.MaxControlFramePayloadSize {
			return fmt.Errorf("%w: %s frame of %d bytes (at most %d)", ErrWebSocketProtocol, opName(d.op), length, ws.MaxControlFramePayloadSize)
		}
	case d.op == ws.OpText:
		return fmt.Errorf("%w: text frame (MQTT travels in binary frames)", ErrWebSocketProtocol)
	case d.op == ws.OpBinary:
		if d.fragmented {
			return fmt.Errorf("%w: binary frame inside a fragmented message", ErrWebSocketProtocol)
		}
		d.fragmented = !d.fin
	case d.op == ws.OpContinuation:
		if !d.fragmented {
			return fmt.Errorf("%w: continuation frame outside a fragmented message", ErrWebSocketProtocol)
		}
		d.fragmented = !d.fin
	}
	return nil
}

// endFrame finishes a frame whose payload is complete.
func (d *frameDecoder) endFrame() error {
	if !d.op.IsControl() {
		return nil
	}
	payload := d.ctl[:d.cn]
	if d.op == ws.OpClose && len(payload) == 1 {
		return fmt.Errorf("%w: close frame with a 1-byte payload", ErrWebSocketProtocol)
	}
	if d.onControl != nil {
		if err := d.onControl(d.op, payload); err != nil {
			return err
		}
	}
	if d.op == ws.OpClose {
		return io.EOF
	}
	return nil
}

func opName(op ws.OpCode) string {
	switch op {
	case ws.OpPing:
		return "ping"
	case ws.OpPong:
		return "pong"
	case ws.OpClose:
		return "close"
	case ws.OpText:
		return "text"
	case ws.OpBinary:
		return "binary"
	case ws.OpContinuation:
		return "continuation"
	}
	return fmt.Sprintf("opcode 0x%x", byte(op))
}
