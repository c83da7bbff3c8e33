package netio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/mqttloop/mqttloop/mqtttest"
)

// wsTestTimeout only turns a hang into a failure.
const wsTestTimeout = 30 * time.Second

// frame encodes a server frame (unmasked unless mask is given).
func frame(op ws.OpCode, fin bool, payload []byte, mask ...byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))}
	p := append([]byte(nil), payload...)
	if len(mask) == 4 {
		h.Masked = true
		copy(h.Mask[:], mask)
		ws.Cipher(p, h.Mask, 0)
	}
	return append(appendFrameHeader(nil, h), p...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

type ctlRecord struct {
	op      ws.OpCode
	payload string
}

// decodeAll runs a frameDecoder over the chunks and returns the payload,
// the control frames seen and the first error.
func decodeAll(chunks ...[]byte) ([]byte, []ctlRecord, error) {
	var ctl []ctlRecord
	d := frameDecoder{onControl: func(op ws.OpCode, p []byte) error {
		ctl = append(ctl, ctlRecord{op, string(p)})
		return nil
	}}
	var out []byte
	for _, c := range chunks {
		b := append([]byte(nil), c...)
		n, err := d.decode(b)
		out = append(out, b[:n]...)
		if err != nil {
			return out, ctl, err
		}
	}
	return out, ctl, nil
}

// bytewise splits b into one-byte chunks.
func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func TestFrameDecoder(t *testing.T) {
	connect := []byte{0x10, 3, 'a', 'b', 'c'}
	puback := []byte{0x40, 2, 0, 1}
	big := bytes.Repeat([]byte{0xAB}, 70000) // 64-bit length form
	mid := bytes.Repeat([]byte{0xCD}, 300)   // 16-bit length form
	cases := []struct {
		name    string
		wire    []byte
		want    []byte
		ctl     []ctlRecord
		wantErr error // nil, io.EOF or ErrWebSocketProtocol
	}{
		{"one packet", frame(ws.OpBinary, true, connect), connect, nil, nil},
		{"several packets per frame", frame(ws.OpBinary, true, cat(connect, puback, puback)), cat(connect, puback, puback), nil, nil},
		{"packet across frames", cat(frame(ws.OpBinary, true, connect[:2]), frame(ws.OpBinary, true, connect[2:])), connect, nil, nil},
		{"fragmented message", cat(frame(ws.OpBinary, false, connect[:1]), frame(ws.OpContinuation, false, connect[1:4]), frame(ws.OpContinuation, true, connect[4:])), connect, nil, nil},
		{"ping in the middle", cat(frame(ws.OpBinary, false, connect[:2]), frame(ws.OpPing, true, []byte("hi")), frame(ws.OpContinuation, true, connect[2:])), connect, []ctlRecord{{ws.OpPing, "hi"}}, nil},
		{"pong ignored", cat(frame(ws.OpPong, true, nil), frame(ws.OpBinary, true, puback)), puback, []ctlRecord{{ws.OpPong, ""}}, nil},
		{"empty frames", cat(frame(ws.OpBinary, true, nil), frame(ws.OpBinary, true, puback)), puback, nil, nil},
		{"16-bit length", frame(ws.OpBinary, true, mid), mid, nil, nil},
		{"64-bit length", frame(ws.OpBinary, true, big), big, nil, nil},
		{"close", cat(frame(ws.OpBinary, true, puback), frame(ws.OpClose, true, []byte{0x03, 0xE8, 'b', 'y', 'e'}), frame(ws.OpBinary, true, connect)), puback, []ctlRecord{{ws.OpClose, "\x03\xe8bye"}}, io.EOF},
		{"text refused", cat(frame(ws.OpBinary, true, puback), frame(ws.OpText, true, []byte("x"))), puback, nil, ErrWebSocketProtocol},
		{"masked refused", frame(ws.OpBinary, true, puback, 1, 2, 3, 4), nil, nil, ErrWebSocketProtocol},
		{"length MSB refused", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, nil, nil, ErrWebSocketProtocol},
		{"reserved bits refused", []byte{0x82 | 0x40, 0}, nil, nil, ErrWebSocketProtocol},
		{"reserved opcode refused", []byte{0x83, 0}, nil, nil, ErrWebSocketProtocol},
		{"fragmented ping refused", []byte{0x09, 0}, nil, nil, ErrWebSocketProtocol},
		{"oversized ping refused", []byte{0x89, 126, 0, 126}, nil, nil, ErrWebSocketProtocol},
		{"continuation without start", frame(ws.OpContinuation, true, puback), nil, nil, ErrWebSocketProtocol},
		{"binary inside fragmented", cat(frame(ws.OpBinary, false, puback), frame(ws.OpBinary, true, puback)), puback, nil, ErrWebSocketProtocol},
		{"close with one byte", frame(ws.OpClose, true, []byte{3}), nil, nil, ErrWebSocketProtocol},
	}
	for _, tc := range cases {
		for _, split := range []string{"whole", "bytewise"} {
			t.Run(tc.name+"/"+split, func(t *testing.T) {
				chunks := [][]byte{tc.wire}
				if split == "bytewise" {
					chunks = bytewise(tc.wire)
				}
				got, ctl, err := decodeAll(chunks...)
				if !bytes.Equal(got, tc.want) {
					t.Errorf("payload %d bytes %x, want %d bytes", len(got), got[:min(len(got), 32)], len(tc.want))
				}
				if len(ctl) != len(tc.ctl) || (len(ctl) > 0 && ctl[0] != tc.ctl[0]) {
					t.Errorf("control frames %v, want %v", ctl, tc.ctl)
				}
				if (tc.wantErr == nil) != (err == nil) || (err != nil && !errors.Is(err, tc.wantErr)) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
			})
		}
	}
}

func TestFrameDecoderStickyError(t *testing.T) {
	d := frameDecoder{}
	if _, err := d.decode([]byte{0x81, 0}); !errors.Is(err, ErrWebSocketProtocol) {
		t.Fatalf("text frame: %v", err)
	}
	b := frame(ws.OpBinary, true, []byte{0xC0, 0})
	if n, err := d.decode(b); n != 0 || !errors.Is(err, ErrWebSocketProtocol) {
		t.Fatalf("after error: %d, %v", n, err)
	}
}

// unmaskFrames parses the client frames in b, checking that each is
// masked, and returns them unmasked.
func unmaskFrames(t *testing.T, b []byte) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatalf("client frame: %v", err)
		}
		if !f.Header.Masked {
			t.Fatal("client frame not masked")
		}
		out = append(out, ws.UnmaskFrameInPlace(f))
	}
	return out
}

func TestWSConnWrite(t *testing.T) {
	for _, size := range []int{0, 5, 125, 126, 65535, 65536, wsWriteChunk + 1, 3*wsWriteChunk + 7} {
		m := &memConn{}
		c := newWSConn(m, "ws", nil)
		p := make([]byte, size)
		for i := range p {
			p[i] = byte(i * 7)
		}
		n, err := c.Write(p)
		if err != nil || n != size {
			t.Fatalf("Write(%d): %d, %v", size, n, err)
		}
		fs := unmaskFrames(t, m.out.Bytes())
		if len(fs) != 1 || fs[0].Header.OpCode != ws.OpBinary || !fs[0].Header.Fin || !bytes.Equal(fs[0].Payload, p) {
			t.Fatalf("Write(%d): %d frames, want one final binary frame with the payload", size, len(fs))
		}
	}
}

func TestWSConnWriteMasksDiffer(t *testing.T) {
	m := &memConn{}
	c := newWSConn(m, "ws", nil)
	masks := map[[4]byte]bool{}
	for range 8 {
		if _, err := c.Write([]byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(m.out.Bytes())
	for r.Len() > 0 {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		masks[h.Mask] = true
		_, _ = r.Seek(h.Length, io.SeekCurrent)
	}
	if len(masks) < 2 {
		t.Fatalf("8 frames used %d distinct masks", len(masks))
	}
}

func TestWSConnWriteDoesNotAllocate(t *testing.T) {
	c := newWSConn(&discardConn{}, "ws", nil)
	p := make([]byte, 1000)
	_, _ = c.Write(p)
	if a := testing.AllocsPerRun(100, func() { _, _ = c.Write(p) }); a != 0 {
		t.Fatalf("Write allocates %.1f times", a)
	}
}

type discardConn struct{ memConn }

func (*discardConn) Write(p []byte) (int, error) { return len(p), nil }

func TestWSConnReadPingCloseAndPending(t *testing.T) {
	connect := []byte{0x10, 3, 'a', 'b', 'c'}
	m := &memConn{}
	// The pending bytes (sent right behind the upgrade answer) hold half a
	// frame; the rest, a ping and a close follow on the connection.
	wire := cat(frame(ws.OpBinary, true, connect), frame(ws.OpPing, true, []byte("p1")), frame(ws.OpBinary, true, connect), frame(ws.OpClose, true, []byte{0x03, 0xE8}))
	m.push(wire[3:9], wire[9:])
	c := newWSConn(m, "ws", append([]byte(nil), wire[:3]...))
	if err := c.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	var got []byte
	var err error
	for range 10 {
		var n int
		n, err = c.ReadNow(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("ReadNow error %v, want io.EOF", err)
	}
	if !bytes.Equal(got, cat(connect, connect)) {
		t.Fatalf("payload %x", got)
	}
	fs := unmaskFrames(t, m.out.Bytes())
	if len(fs) != 2 || fs[0].Header.OpCode != ws.OpPong || string(fs[0].Payload) != "p1" || fs[1].Header.OpCode != ws.OpClose || !bytes.Equal(fs[1].Payload, []byte{0x03, 0xE8}) {
		t.Fatalf("replies %+v, want pong p1 then close 1000", fs)
	}
	if !m.writeDeadline.Equal(time.Unix(1, 0)) {
		t.Fatalf("write deadline %v after the replies, want the caller's restored", m.writeDeadline)
	}
	if _, err := c.ReadNow(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadNow after close: %v", err)
	}
}

func TestWSConnReadNowNothing(t *testing.T) {
	m := &memConn{}
	m.push(frame(ws.OpPong, true, nil))
	c := newWSConn(m, "ws", nil)
	n, err := c.ReadNow(make([]byte, 8))
	if n != 0 || err != nil {
		t.Fatalf("ReadNow = %d, %v; want 0, nil", n, err)
	}
	if m.readNowCalls != 2 {
		t.Fatalf("inner ReadNow called %d times, want 2 (the pong, then nothing)", m.readNowCalls)
	}
	// ReadWait's timeout is passed on and is not sticky.
	if _, err := c.ReadWait(make([]byte, 8), time.Now()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadWait: %v", err)
	}
	m.push(frame(ws.OpBinary, true, []byte{0xD0, 0}))
	if n, err := c.ReadWait(make([]byte, 8), time.Time{}); n != 2 || err != nil {
		t.Fatalf("ReadWait after timeout: %d, %v", n, err)
	}
}

func TestWSConnProtocolErrorAfterPayload(t *testing.T) {
	m := &memConn{}
	m.push(cat(frame(ws.OpBinary, true, []byte{0xD0, 0}), frame(ws.OpText, true, []byte("no"))))
	c := newWSConn(m, "ws", nil)
	buf := make([]byte, 64)
	if n, err := c.ReadNow(buf); n != 2 || err != nil {
		t.Fatalf("first ReadNow = %d, %v; want the payload before the error", n, err)
	}
	if _, err := c.ReadNow(buf); !errors.Is(err, ErrWebSocketProtocol) || !strings.Contains(err.Error(), "text frame") {
		t.Fatalf("second ReadNow: %v", err)
	}
}

// FuzzWebSocketFrames feeds arbitrary bytes to the decoder, whole and in
// two pieces: it must not panic, and the split must not change the result.
func FuzzWebSocketFrames(f *testing.F) {
	f.Add(frame(ws.OpBinary, true, []byte{0x10, 3, 'a', 'b', 'c'}), uint16(3))
	f.Add(cat(frame(ws.OpBinary, false, []byte{1}), frame(ws.OpPing, true, []byte("x")), frame(ws.OpContinuation, true, []byte{2})), uint16(4))
	f.Add([]byte{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2}, uint16(5))
	f.Add(frame(ws.OpClose, true, []byte{3, 0xe8}), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, at uint16) {
		cut := int(at) % (len(data) + 1)
		whole, ctl1, err1 := decodeAll(data)
		split, ctl2, err2 := decodeAll(data[:cut], data[cut:])
		if !bytes.Equal(whole, split) || len(ctl1) != len(ctl2) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("split at %d changed the result: %x/%v/%v vs %x/%v/%v", cut, whole, ctl1, err1, split, ctl2, err2)
		}
		if len(whole) > len(data) {
			t.Fatalf("%d payload bytes out of %d", len(whole), len(data))
		}
	})
}

// wsServer is a WebSocket server of the test's own, on gorilla/websocket:
// it records the upgrade request and echoes binary messages.
type wsServer struct {
	*httptest.Server
	reqs chan *http.Request
}

func startWSServer(t *testing.T, protocols []string, handle func(*websocket.Conn)) *wsServer {
	t.Helper()
	s := &wsServer{reqs: make(chan *http.Request, 16)}
	up := websocket.Upgrader{Subprotocols: protocols}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs <- r
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}))
	t.Cleanup(s.Close)
	return s
}

// wsEcho answers every binary message with the same message.
func wsEcho(c *websocket.Conn) {
	for {
		typ, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(typ, p); err != nil {
			return
		}
	}
}

func dialWS(t *testing.T, raw string, h http.Header) (Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsTestTimeout)
	defer cancel()
	return Dial(ctx, raw, DialOptions{Header: h})
}

func TestWebSocketUpgrade(t *testing.T) {
	s := startWSServer(t, []string{"other", "mqtt"}, wsEcho)
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/custom/path?x=1"
	h := http.Header{"Authorization": {"Bearer t0ken"}, "X-Extra": {"a", "b"}}
	c, err := dialWS(t, u, h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := <-s.reqs
	if req.URL.RequestURI() != "/custom/path?x=1" {
		t.Errorf("request URI %q", req.URL.RequestURI())
	}
	if req.Host != strings.TrimPrefix(s.URL, "http://") {
		t.Errorf("Host %q", req.Host)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer t0ken" {
		t.Errorf("Authorization %q", got)
	}
	if got := req.Header.Values("X-Extra"); len(got) != 2 {
		t.Errorf("X-Extra %q", got)
	}
	if got := req.Header.Get("Sec-Websocket-Protocol"); got != "mqtt" {
		t.Errorf("Sec-WebSocket-Protocol %q", got)
	}
	if c.Transport() != "ws" {
		t.Errorf("Transport %q", c.Transport())
	}

	// Readiness: arm, read nothing, write; the echo makes the Readiness
	// fire, and ReadNow returns it.
	buf := make([]byte, 64)
	rd, err := c.Arm()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.ReadNow(buf); n != 0 || err != nil {
		t.Fatalf("ReadNow before anything was sent: %d, %v", n, err)
	}
	msg := []byte{0xC0, 0} // PINGREQ
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(msg) {
		if !awaitReady(rd, wsTestTimeout) {
			t.Fatal("readiness never fired")
		}
		if rd, err = c.Arm(); err != nil {
			t.Fatal(err)
		}
		n, err := c.ReadNow(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	c.Disarm()
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo %x", got)
	}

	// ReadWait with a large message spanning many reads.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for len(got) < len(big) {
		n, err := c.ReadWait(buf[:cap(buf)], time.Now().Add(wsTestTimeout))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("1 MiB echo differs")
	}
}

func TestWebSocketHostHeaderOverride(t *testing.T) {
	s := startWSServer(t, []string{"mqtt"}, wsEcho)
	c, err := dialWS(t, "ws"+strings.TrimPrefix(s.URL, "http"), http.Header{"Host": {"broker.example"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := <-s.reqs
	if req.Host != "broker.example" || req.URL.Path != DefaultWebSocketPath {
		t.Fatalf("Host %q path %q", req.Host, req.URL.Path)
	}
}

func TestWebSocketUpgradeFailures(t *testing.T) {
	t.Run("no subprotocol", func(t *testing.T) {
		s := startWSServer(t, nil, wsEcho)
		_, err := dialWS(t, "ws"+strings.TrimPrefix(s.URL, "http"), nil)
		if !errors.Is(err, ErrWebSocketProtocol) || !strings.Contains(err.Error(), `"mqtt"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("HTTP 404", func(t *testing.T) {
		s := startWSServer(t, []string{"mqtt"}, wsEcho)
		_, err := dialWS(t, "ws"+strings.TrimPrefix(s.URL, "http")+"/missing", nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 404") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("reserved header", func(t *testing.T) {
		s := startWSServer(t, []string{"mqtt"}, wsEcho)
		_, err := dialWS(t, "ws"+strings.TrimPrefix(s.URL, "http"), http.Header{"Sec-Websocket-Protocol": {"x"}})
		if err == nil || !strings.Contains(err.Error(), "cannot be overridden") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not HTTP", func(t *testing.T) {
		ln := listen(t, "tcp")
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			// An MQTT broker's CONNACK, not an HTTP answer.
			_, _ = c.Write([]byte("\x20\x02\x00\x00\r\n"))
		}()
		_, err := dialWS(t, "ws://"+ln.Addr().String(), nil)
		if err == nil || !strings.Contains(err.Error(), "websocket upgrade") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ln := listen(t, "tcp")
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, "ws://"+ln.Addr().String(), DialOptions{})
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		(<-accepted).Close()
	})
	t.Run("cancel", func(t *testing.T) {
		ln := listen(t, "tcp")
		ctx, cancel := context.WithCancel(context.Background())
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
				// The request has arrived: the client is waiting for the answer.
				_, _ = bufio.NewReader(c).ReadString('\n')
				cancel()
			}
		}()
		_, err := Dial(ctx, "ws://"+ln.Addr().String(), DialOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		(<-accepted).Close()
	})
}

// TestWebSocketPendingAfterUpgrade: a server that sends a frame in the
// same segment as its 101 answer; the bytes buffered by the handshake
// come out of the first ReadNow.
func TestWebSocketPendingAfterUpgrade(t *testing.T) {
	ln := listen(t, "tcp")
	connack := []byte{0x20, 3, 0, 0, 0}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-Websocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
		_, _ = c.Write(cat([]byte(resp), frame(ws.OpBinary, true, connack)))
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := dialWS(t, "ws://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	n, err := c.ReadNow(buf)
	if err != nil || !bytes.Equal(buf[:n], connack) {
		t.Fatalf("ReadNow = %x, %v; want the CONNACK sent with the upgrade answer", buf[:n], err)
	}
}

// TestWebSocketMochi speaks MQTT with the embedded broker's WebSocket
// listener.
func TestWebSocketMochi(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{WebSocket: true})
	c, err := dialWS(t, b.WebSocketURL(), http.Header{"X-Test": {"mochi"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A minimal MQTT 5 CONNECT (clean start, keepalive 30 s, client id
	// "ws-netio", no properties); the answer must be a CONNACK with
	// reason 0.
	connect := []byte{0x10, 21, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 8, 'w', 's', '-', 'n', 'e', 't', 'i', 'o'}
	if err := c.SetWriteDeadline(time.Now().Add(wsTestTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 64)
	for len(got) < 4 {
		n, err := c.ReadWait(buf, time.Now().Add(wsTestTimeout))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if got[0] != 0x20 || got[3] != 0 {
		t.Fatalf("answer % x, want a CONNACK with reason 0", got)
	}
	ups := b.WebSocketUpgrades()
	if len(ups) != 1 || ups[0].Path != "/mqtt" || ups[0].Header.Get("X-Test") != "mochi" {
		t.Fatalf("upgrades %+v", ups)
	}
}

func TestWSHost(t *testing.T) {
	for in, want := range map[string]string{
		"ws://b":            "b",
		"ws://b:80":         "b",
		"ws://b:8080":       "b:8080",
		"wss://b":           "b",
		"wss://b:80":        "b:80",
		"ws://[::1]":        "[::1]",
		"wss://[::1]:8443/": "[::1]:8443",
	} {
		u, err := ParseServer(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := wsHost(u); got != want {
			t.Errorf("wsHost(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestWSSUsesTLSHandshake(t *testing.T) {
	// Until netio/tls.go provides handshakeTLS this only checks that wss://
	// goes through it; with the TLS transport the WebSocket end-to-end
	// tests cover wss://.
	ln := listen(t, "tcp")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Dial(ctx, "wss://"+ln.Addr().String(), DialOptions{})
	if err == nil {
		t.Fatal("wss:// to a server that never answers the TLS handshake succeeded")
	}
}

// BenchmarkFrameDecoder decodes 16 KiB reads holding 1 KiB binary frames.
func BenchmarkFrameDecoder(b *testing.B) {
	one := frame(ws.OpBinary, true, bytes.Repeat([]byte{0x30}, 1024-4))
	wire := bytes.Repeat(one, 16)
	buf := make([]byte, len(wire))
	d := frameDecoder{}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, wire)
		if _, err := d.decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWSConnWrite frames and masks 16 KiB writes.
func BenchmarkWSConnWrite(b *testing.B) {
	c := newWSConn(&discardConn{}, "ws", nil)
	p := make([]byte, 16<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}
