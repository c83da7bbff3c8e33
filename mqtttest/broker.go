package mqtttest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// listenerID is the id of the broker's only listener.
const listenerID = "mqtttest-tcp"

// closeTimeout bounds how long Close waits for the broker's goroutines to
// exit after everything was told to stop; reaching it is a bug.
const closeTimeout = 10 * time.Second

// Options configures a Broker. The zero value is a broker with mochi's
// defaults, allow-all authentication, packet capture on and no logging.
type Options struct {
	// MaximumPacketSize is the largest packet, in bytes, the broker accepts
	// from clients; it is advertised as Maximum Packet Size in MQTT 5
	// CONNACKs. Zero means no limit (mochi's default) and no property.
	// mochi closes the connection, without a DISCONNECT, when a client
	// exceeds it.
	MaximumPacketSize uint32
	// ReceiveMaximum is the number of unacknowledged QoS 1/2 PUBLISH packets
	// the broker accepts from each client; mochi always advertises it in
	// MQTT 5 CONNACKs and disconnects a client that exceeds it with reason
	// 0x93. Zero means mochi's default, 1024.
	ReceiveMaximum uint16
	// TopicAliasMaximum, when non-zero, is the highest topic alias the
	// broker accepts from clients and is advertised in MQTT 5 CONNACKs.
	// When zero, mochi accepts aliases up to 65535 but advertises none.
	TopicAliasMaximum uint16
	// ServerKeepAlive, when non-zero, replaces every client's keepalive with
	// this many seconds and announces it with the Server Keep Alive
	// property in MQTT 5 CONNACKs.
	ServerKeepAlive uint16
	// NoWildcardSubscriptions, NoSharedSubscriptions and
	// NoSubscriptionIdentifiers announce in MQTT 5 CONNACKs that the
	// broker does not support these features (Wildcard Subscription
	// Available, Shared Subscription Available, Subscription Identifiers
	// Available set to 0). They only change the announcement: mochi goes on
	// serving the features.
	NoWildcardSubscriptions   bool
	NoSharedSubscriptions     bool
	NoSubscriptionIdentifiers bool
	// ResponseInformation, when non-empty, is sent as Response Information
	// in the MQTT 5 CONNACK of clients that request it.
	ResponseInformation string
	// ServerReference, when non-empty, is sent as Server Reference in
	// every MQTT 5 CONNACK.
	ServerReference string
	// ConnackUserProperties are added to every MQTT 5 CONNACK.
	ConnackUserProperties []UserProperty
	// Authenticate, when set, decides whether a client may connect from
	// its client id, user name and password (and, for MQTT 5, the user
	// properties of its CONNECT); a refused client gets CONNACK 0x86 (bad
	// user name or password). It is called on the connection's goroutine.
	// Nil accepts every client.
	Authenticate func(c ConnectInfo) bool
	// EnhancedAuth, when set, serves MQTT 5 enhanced authentication:
	// clients whose CONNECT names its method go through its conversation
	// (AUTH packets) before CONNACK, and can re-authenticate; a CONNECT
	// naming another method is refused with 0x8C (bad authentication
	// method). SCRAMSHA256 provides SCRAM-SHA-256.
	EnhancedAuth EnhancedAuth
	// RequireEnhancedAuth refuses MQTT 5 clients that do not use
	// EnhancedAuth (0x8C).
	RequireEnhancedAuth bool
	// RefuseMQTT5 makes the broker behave like an MQTT 3.1.1-only broker
	// towards MQTT 5 clients: it answers their CONNECT with a 3.1.1 CONNACK
	// with return code 0x01 (unacceptable protocol version) and closes the
	// connection.
	RefuseMQTT5 bool
	// InlineClient enables mochi's inline client, so that tests can call
	// Server().Publish and Server().Subscribe.
	InlineClient bool
	// DisableCapture turns packet capture off (WaitPacket and friends then
	// return ErrCaptureDisabled). Long-running users such as the demo or
	// benchmarks should set it: the capture keeps every packet in memory.
	DisableCapture bool
	// WebSocket adds a WebSocket listener (MQTT over WebSocket, subprotocol
	// "mqtt", any path) on another free port; see WebSocketURL.
	WebSocket bool
	// SecureWebSocket adds a WebSocket listener over TLS (wss://, see
	// SecureWebSocketURL) on another free port. Like QUIC it uses the TLS
	// configuration when one is set (mutual TLS included), else the test
	// certificates.
	SecureWebSocket bool
	// QUIC adds a QUIC listener (MQTT over QUIC, see QUICURL) on a free
	// UDP port. It uses the TLS configuration when one is set (mutual TLS
	// included), else the test certificates. It speaks single-stream
	// MQTT over QUIC and EMQX's multi-stream mode: packets on data
	// streams are answered on the stream they came on, and messages are
	// delivered on the stream the subscription was made on.
	QUIC bool
	// QUICPerStreamIDs makes the QUIC listener number the deliveries of
	// each data stream on their own, from 1, the way EMQX does (it gives
	// each data stream its own copy of the session), so that two streams
	// deliver different messages under the same packet id. By default the
	// ids are mochi's, one space for the client.
	QUICPerStreamIDs bool
	// Logger receives mochi's logs. Nil discards them.
	Logger *slog.Logger
	// TLS, when non-nil, opens a second listener on another free loopback
	// port that serves MQTT over TLS with this configuration (see TLSURL).
	// testcerts.Set.ServerConfig makes one.
	TLS *tls.Config

	// ListenAddr, TLSListenAddr, WebSocketListenAddr,
	// SecureWebSocketListenAddr and QUICListenAddr are the addresses
	// ("host:port") the TCP, TLS, WebSocket, secure WebSocket and QUIC
	// listeners bind, for a broker that clients find at a known port.
	// Empty: a free port of 127.0.0.1.
	ListenAddr, TLSListenAddr, WebSocketListenAddr, SecureWebSocketListenAddr, QUICListenAddr string
	// Hooks are added to the mochi server after the package's own and
	// before it starts serving, so a storage hook (retained messages and
	// sessions kept across restarts) loads its data at start. Each is
	// added with a nil configuration: configure it before.
	Hooks []mqtt.Hook
}

// listenAddr returns addr, or a free port of 127.0.0.1 when it is empty.
func listenAddr(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

// ConnectInfo is what Options.Authenticate decides on.
type ConnectInfo struct {
	ClientID       string
	Username       string
	Password       []byte
	UserProperties []UserProperty
}

// UserProperty is an MQTT 5 user property.
type UserProperty struct{ Key, Value string }

// Broker is a running embedded broker. Its methods are safe for concurrent
// use.
type Broker struct {
	srv      *mqtt.Server
	ln       *listener
	addr     string
	tlsAddr  string // "" without Options.TLS
	quicAddr string // "" without Options.QUIC
	owners   *owners
	capture  *capture
	hook     *hook
	wsAddr   string   // "" without Options.WebSocket
	wssAddr  string   // "" without Options.SecureWebSocket
	ws       *wsState // nil without Options.WebSocket and SecureWebSocket
	closeOne sync.Once
	closeErr error
}

// Start starts a broker on a free port of 127.0.0.1.
func Start(opts Options) (*Broker, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	if opts.MaximumPacketSize > 0 {
		caps.MaximumPacketSize = opts.MaximumPacketSize
	}
	if opts.ReceiveMaximum > 0 {
		caps.ReceiveMaximum = opts.ReceiveMaximum
	}
	if opts.TopicAliasMaximum > 0 {
		caps.TopicAliasMaximum = opts.TopicAliasMaximum
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       logger,
		InlineClient: opts.InlineClient,
	})

	b := &Broker{srv: srv, owners: newOwners()}
	if !opts.DisableCapture {
		b.capture = newCapture()
	}
	b.hook = &hook{srv: srv, opts: opts, capture: b.capture, conns: map[net.Conn]*connState{}}
	if err := srv.AddHook(&allowAll{check: opts.Authenticate}, nil); err != nil {
		return nil, fmt.Errorf("mqtttest: add auth hook: %w", err)
	}
	if err := srv.AddHook(b.hook, nil); err != nil {
		return nil, fmt.Errorf("mqtttest: add hook: %w", err)
	}

	for _, h := range opts.Hooks {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("mqtttest: add hook %s: %w", h.ID(), err)
		}
	}

	tcp, err := net.Listen("tcp", listenAddr(opts.ListenAddr))
	if err != nil {
		return nil, fmt.Errorf("mqtttest: listen: %w", err)
	}
	b.addr = tcp.Addr().String()
	b.ln = newListener(listenerID, tcp, b.owners, b.hook, func() { b.disconnectListener(listenerID) })
	if err := srv.AddListener(b.ln); err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("mqtttest: add listener: %w", err)
	}
	if opts.WebSocket {
		if err := b.startWebSocket(opts.WebSocketListenAddr, nil); err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	if opts.SecureWebSocket {
		cfg := opts.TLS
		if cfg == nil {
			certs := testcerts.Get()
			cfg = certs.ServerConfig(certs.Server, false)
		}
		if err := b.startWebSocket(opts.SecureWebSocketListenAddr, cfg); err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	if opts.TLS != nil {
		if err := b.listenTLS(opts.TLS, opts.TLSListenAddr); err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	if opts.QUIC {
		if err := b.startQUIC(opts.TLS, opts.QUICPerStreamIDs, opts.QUICListenAddr); err != nil {
			_ = b.Close()
			return nil, err
		}
	}

	// Serve starts mochi's housekeeping loop and the listener goroutine.
	// It runs on a goroutine of its own so that the goroutines it starts can
	// be told apart (by their parent id) from those of other brokers.
	served := make(chan error, 1)
	go func() {
		b.owners.add(leakcheck.CurrentID())
		served <- srv.Serve()
	}()
	if err := <-served; err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("mqtttest: serve: %w", err)
	}
	return b, nil
}

// URL returns the broker's address as "mqtt://127.0.0.1:PORT".
func (b *Broker) URL() string { return "mqtt://" + b.addr }

// Addr returns the broker's TCP address as "127.0.0.1:PORT".
func (b *Broker) Addr() string { return b.addr }

// Server returns the underlying mochi server, for tests that need more than
// this package offers.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Close stops the broker: it sends a DISCONNECT with reason 0x8B (server
// shutting down) to the MQTT 5 clients that completed CONNECT (MQTT 3.1.1
// has no broker DISCONNECT; mochi would send one anyway), closes every
// connection and the listening socket, and returns once every goroutine the
// broker started has exited. Calling it again returns the first result.
func (b *Broker) Close() error {
	b.closeOne.Do(func() {
		b.closeErr = b.close()
	})
	return b.closeErr
}

func (b *Broker) close() error {
	// mochi's Close starts a goroutine to stop hooks; run it on a goroutine
	// of ours so that one is recognized as the broker's too.
	closed := make(chan error, 1)
	go func() {
		b.owners.add(leakcheck.CurrentID())
		closed <- b.srv.Close()
	}()
	err := <-closed
	// Every goroutine of the broker descends from a goroutine recorded in
	// owners: the Serve and Close goroutines (mochi's event loop, the
	// listener goroutine, the hook stopper), the accept loop (one goroutine
	// per connection) and those (each client's write loop). All were told
	// to stop; wait until the last of them has returned.
	var left []leakcheck.Goroutine
	if !leakcheck.Poll(closeTimeout, func() bool {
		left = b.owners.alive(leakcheck.Snapshot())
		return len(left) == 0
	}) {
		return fmt.Errorf("mqtttest: goroutines still running after Close: %s", leakcheck.Report(left))
	}
	return err
}

// disconnectListener ends the connection of every client of the listener
// with that id that completed CONNECT, as a broker shutting down: MQTT 5
// clients get DISCONNECT 0x8B first.
func (b *Broker) disconnectListener(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener != id || cl.Closed() {
			continue
		}
		if cl.Properties.ProtocolVersion < 5 {
			cl.Stop(packets.ErrServerShuttingDown)
			continue
		}
		_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
	}
}

// ErrNotConnected is returned by DisconnectClient when no client with that
// id has a connection on which a successful CONNACK was written.
var ErrNotConnected = errors.New("mqtttest: client not connected")

// DisconnectClient makes the broker end a client's connection as a broker
// would: to an MQTT 5 client it sends DISCONNECT with reasonCode (with a
// Reason String when reasonCode >= 0x80) and then closes the connection; an
// MQTT 3.1.1 client has no broker DISCONNECT, so its connection is just
// closed. It may be called as soon as the client has received its CONNACK
// (the DISCONNECT never overtakes the CONNACK); before that, or after the
// connection ended, the result is ErrNotConnected. It returns once the
// connection is closed.
func (b *Broker) DisconnectClient(clientID string, reasonCode byte) error {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok || cl.Net.Conn == nil || !b.hook.awaitConnack(cl.Net.Conn) || cl.Closed() {
		return fmt.Errorf("%w: %q", ErrNotConnected, clientID)
	}
	code := packets.Code{Code: reasonCode}
	if reasonCode >= packets.ErrUnspecifiedError.Code {
		code.Reason = fmt.Sprintf("disconnected by test broker (reason 0x%02X)", reasonCode)
	}
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(code)
		return nil
	}
	err := b.srv.DisconnectClient(cl, code)
	var c packets.Code
	if errors.As(err, &c) && c == code {
		// mochi returns the code itself as an error for codes >= 0x80.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("mqtttest: disconnect %q: %w", clientID, err)
	}
	return nil
}

// owners is the set of goroutine ids whose descendants belong to a broker.
type owners struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

func newOwners() *owners { return &owners{ids: map[uint64]bool{}} }

func (o *owners) add(id uint64) {
	o.mu.Lock()
	o.ids[id] = true
	o.mu.Unlock()
}

// alive returns the goroutines of s that are owners or were started by one.
func (o *owners) alive(s leakcheck.Set) []leakcheck.Goroutine {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []leakcheck.Goroutine
	for _, g := range s.Sorted() {
		if o.ids[g.ID] || o.ids[g.ParentID] {
			out = append(out, g)
		}
	}
	return out
}

// WaitPacket waits until the broker has recorded a packet of packetType
// (packets.Connect, packets.Pingreq, ... — the MQTT packet type numbers,
// shared by mochi's and paho's packets packages) read from (FromClient) or
// written to (ToClient) the client clientID; "" matches any client. It looks
// at everything recorded since the broker started, so it may be called after
// the action that causes the packet. It returns the first match.
func (b *Broker) WaitPacket(ctx context.Context, clientID string, dir Direction, packetType byte) (Captured, error) {
	return b.WaitPacketAfter(ctx, 0, clientID, dir, packetType)
}

// WaitPacketAfter is WaitPacket for packets recorded after the packet with
// sequence number after (see Captured.Seq and LastSeq): use it to wait for
// the second PINGREQ, or for the answer to a packet already seen.
func (b *Broker) WaitPacketAfter(ctx context.Context, after uint64, clientID string, dir Direction, packetType byte) (Captured, error) {
	return b.WaitMatch(ctx, after, func(c Captured) bool {
		return c.Direction == dir && c.Type == packetType && (clientID == "" || c.ClientID == clientID)
	})
}

// WaitMatch waits until a packet recorded after sequence number after
// satisfies match, and returns the first one that does. It returns ctx's
// error if ctx ends first.
func (b *Broker) WaitMatch(ctx context.Context, after uint64, match func(Captured) bool) (Captured, error) {
	if b.capture == nil {
		return Captured{}, ErrCaptureDisabled
	}
	return b.capture.wait(ctx, after, match)
}

// Packets returns a copy of everything recorded so far, in order.
func (b *Broker) Packets() []Captured {
	if b.capture == nil {
		return nil
	}
	return b.capture.all()
}

// LastSeq returns the sequence number of the last packet recorded so far (0
// when none).
func (b *Broker) LastSeq() uint64 {
	if b.capture == nil {
		return 0
	}
	return b.capture.last()
}

// Count returns how many packets of packetType were recorded for clientID
// ("" for any client) in direction dir.
func (b *Broker) Count(clientID string, dir Direction, packetType byte) int {
	n := 0
	for _, c := range b.Packets() {
		if c.Direction == dir && c.Type == packetType && (clientID == "" || c.ClientID == clientID) {
			n++
		}
	}
	return n
}
