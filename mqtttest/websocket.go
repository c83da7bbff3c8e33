package mqtttest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsListenerID and wssListenerID are the ids of the WebSocket listener
// (Options.WebSocket) and of the secure one (Options.SecureWebSocket).
const (
	wsListenerID  = "mqtttest-ws"
	wssListenerID = "mqtttest-wss"
)

// wsUpgradeTimeout bounds how long a WebSocket connection may take to send
// its upgrade request.
const wsUpgradeTimeout = 10 * time.Second

// WebSocketUpgrade is an upgrade request the WebSocket listener received.
type WebSocketUpgrade struct {
	// Path is the request's path (with the query, if any).
	Path string
	// Host is the request's Host header.
	Host string
	// Header is the request's header (without Host).
	Header http.Header
}

// wsState is what the broker's WebSocket listeners (ws and wss) recorded.
type wsState struct {
	mu       sync.Mutex
	upgrades []WebSocketUpgrade
}

// startWebSocket adds a WebSocket listener (Options.WebSocket) on addr, a
// free port of 127.0.0.1 when empty, or with a TLS configuration the
// secure one (Options.SecureWebSocket). It is served like the TCP
// listener (listener.go), so Close waits for its goroutines too: the TLS
// handshake and the upgrade run on the connection's goroutine, at the
// connection's first read or write.
func (b *Broker) startWebSocket(addr string, cfg *tls.Config) error {
	id, kind := wsListenerID, "websocket"
	if cfg != nil {
		id, kind = wssListenerID, "secure websocket"
	}
	tcp, err := net.Listen("tcp", listenAddr(addr))
	if err != nil {
		return fmt.Errorf("mqtttest: %s listen: %w", kind, err)
	}
	if b.ws == nil {
		b.ws = &wsState{}
	}
	var nl net.Listener = tcp
	if cfg != nil {
		b.wssAddr = tcp.Addr().String()
		nl = tls.NewListener(tcp, cfg.Clone())
	} else {
		b.wsAddr = tcp.Addr().String()
	}
	ln := newListener(id, &wsNetListener{Listener: nl, st: b.ws}, b.owners, b.hook, func() { b.disconnectListener(id) })
	if err := b.srv.AddListener(ln); err != nil {
		_ = tcp.Close()
		return fmt.Errorf("mqtttest: add %s listener: %w", kind, err)
	}
	return nil
}

// WebSocketURL returns the WebSocket listener's URL,
// "ws://127.0.0.1:PORT/mqtt", or "" when Options.WebSocket is off. The
// listener accepts any path.
func (b *Broker) WebSocketURL() string {
	if b.wsAddr == "" {
		return ""
	}
	return "ws://" + b.wsAddr + "/mqtt"
}

// SecureWebSocketURL returns the secure WebSocket listener's URL,
// "wss://127.0.0.1:PORT/mqtt", or "" when Options.SecureWebSocket is off.
// The listener accepts any path. Clients must trust the certificate of
// Options.TLS, or testcerts.Get().CA when Options.TLS is nil.
func (b *Broker) SecureWebSocketURL() string {
	if b.wssAddr == "" {
		return ""
	}
	return "wss://" + b.wssAddr + "/mqtt"
}

// WebSocketUpgrades returns the upgrade requests the WebSocket listeners
// (ws and wss) received so far, in order (also those they refused).
func (b *Broker) WebSocketUpgrades() []WebSocketUpgrade {
	if b.ws == nil {
		return nil
	}
	b.ws.mu.Lock()
	defer b.ws.mu.Unlock()
	out := make([]WebSocketUpgrade, len(b.ws.upgrades))
	for i, u := range b.ws.upgrades {
		u.Header = u.Header.Clone()
		out[i] = u
	}
	return out
}

// wsNetListener accepts TCP connections and returns them as wsServerConns.
type wsNetListener struct {
	net.Listener
	st *wsState
}

func (l *wsNetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wsServerConn{Conn: c, st: l.st}, nil
}

// wsServerConn is the server side of an MQTT-over-WebSocket connection as
// a net.Conn, for mochi. The WebSocket side is gorilla/websocket (the
// library of mochi's own WebSocket listener; the client uses another one,
// so the two sides check each other). The upgrade happens at the first
// Read or Write.
type wsServerConn struct {
	net.Conn // the TCP connection: addresses, deadlines, Close
	st       *wsState

	once sync.Once
	ws   *websocket.Conn
	err  error

	r io.Reader // the message being read
}

// upgrade reads the HTTP upgrade request and answers it.
func (c *wsServerConn) upgrade() {
	c.once.Do(func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(wsUpgradeTimeout))
		br := bufio.NewReader(c.Conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			c.err = fmt.Errorf("mqtttest: websocket upgrade request: %w", err)
			return
		}
		c.st.mu.Lock()
		h := req.Header.Clone()
		c.st.upgrades = append(c.st.upgrades, WebSocketUpgrade{Path: req.URL.RequestURI(), Host: req.Host, Header: h})
		c.st.mu.Unlock()
		up := websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			CheckOrigin:  func(*http.Request) bool { return true },
		}
		w := &hijackWriter{conn: c.Conn, br: br, header: http.Header{}}
		ws, err := up.Upgrade(w, req, nil)
		if err != nil {
			c.err = fmt.Errorf("mqtttest: websocket upgrade: %w", err)
			return
		}
		_ = c.Conn.SetReadDeadline(time.Time{})
		c.ws = ws
	})
}

// Read returns the payload of binary messages as one byte stream.
func (c *wsServerConn) Read(p []byte) (int, error) {
	if c.upgrade(); c.err != nil {
		return 0, c.err
	}
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("mqtttest: websocket message is not binary")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends p as one binary message.
func (c *wsServerConn) Write(p []byte) (int, error) {
	if c.upgrade(); c.err != nil {
		return 0, c.err
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// hijackWriter is the http.ResponseWriter gorilla's Upgrader needs, over a
// connection that no http.Server owns: it hands the connection over, or
// writes a refusal.
type hijackWriter struct {
	conn   net.Conn
	br     *bufio.Reader
	header http.Header
	status int
	wrote  bool
}

func (w *hijackWriter) Header() http.Header { return w.header }

func (w *hijackWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *hijackWriter) Write(p []byte) (int, error) {
	if w.wrote {
		return w.conn.Write(p)
	}
	w.wrote = true
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	w.header.Set("Connection", "close")
	_ = w.header.Write(&buf)
	buf.WriteString("\r\n")
	buf.Write(p)
	if _, err := w.conn.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriter(w.conn)), nil
}
