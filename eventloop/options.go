package eventloop

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state"
)

// Options configure an EventLoop. Only Servers is required.
type Options struct {
	// Servers are broker URLs, tried in turn:
	//
	//	mqtt://host[:1883]         TCP (tcp:// is an alias)
	//	mqtts://host[:8883]        TLS (ssl:// and tls:// are aliases)
	//	ws://host[:80][/mqtt]      WebSocket
	//	wss://host[:443][/mqtt]    WebSocket over TLS
	//	quic://host[:14567]        QUIC (UDP)
	//	unix:///path/to.sock       Unix domain socket
	//
	// A server that cannot be reached before CONNACK is followed at once by
	// the next one, so listing quic:// first and mqtts:// second falls back
	// to TLS over TCP where UDP is blocked. Connected says which server
	// and transport are in use.
	Servers []string
	// ClientID identifies the session to the broker. Empty lets the broker
	// assign one (reported in Connected), which is only allowed for a
	// session that does not outlive the connection (SessionExpiry 0).
	ClientID string
	// Username and Password authenticate; Password never appears in logs
	// or errors. MQTT 3.1.1 (ProtocolVersion 4) allows a password only
	// with a user name.
	Username string
	Password []byte
	// Credentials, if set, supplies the user name, password, CONNECT user
	// properties and WebSocket headers afresh before every connection
	// attempt, e.g. a short-lived token signed now. ctx carries the
	// connect deadline (ConnectTimeout covers the call, dialing and
	// CONNACK) and ends with the run; server is one of Servers as written.
	// It runs on the goroutine calling Next. An error counts as a failed
	// connection attempt: reported and retried as Reconnect says, wrapped
	// in ErrCredentials. With Credentials set, a refusal for bad
	// credentials (0x86) or not authorized (0x87) is retried too (the
	// next call can fetch a valid token) rather than ending the run.
	// Username and Password must then be left empty.
	Credentials func(ctx context.Context, server string) (Credentials, error)

	// ProtocolVersion is the MQTT version spoken: 5 (MQTT 5, the default
	// when 0) or 4 (MQTT 3.1.1, for brokers and fleets that speak only
	// that). Everything else is ErrInvalidOptions. Sessions, keepalive,
	// reconnecting, acks, the offline queue and every transport work the
	// same on both.
	//
	// MQTT 3.1.1 lacks what MQTT 5 added: what needs it is refused, never
	// left out silently, and sessions map onto the Clean Session flag; see
	// "MQTT 3.1.1" in the package documentation.
	ProtocolVersion byte

	// KeepAlive is the MQTT keepalive (default 60 s; a negative value
	// disables it). The broker may override it in CONNACK.
	KeepAlive time.Duration
	// PingTimeout is how long the loop waits for any packet after a
	// PINGREQ before it declares the connection dead (default: 10 s, or
	// KeepAlive if that is shorter).
	PingTimeout time.Duration
	// ConnectTimeout covers dialing and waiting for CONNACK (default 30 s).
	ConnectTimeout time.Duration
	// WriteTimeout bounds a blocked write to the broker (default 30 s).
	WriteTimeout time.Duration

	// CleanStart asks the broker to discard any session it holds for
	// ClientID at the first connection of this loop. (With ProtocolVersion
	// 4 it is the Clean Session flag of every connection: see there.)
	CleanStart bool
	// SessionExpiry is how long the broker keeps the session after the
	// connection ends (a fraction of a second is rounded up, at most
	// 2^32-1 s; 0, the default: it ends with the
	// connection; SessionNeverExpires: never). MQTT 5 only: with
	// ProtocolVersion 4, leave it 0 and use CleanStart false for a
	// persistent session.
	//
	// Even at 0 a reconnecting loop loses no request: it sends again what
	// the broker did not acknowledge and subscribes again. What a longer
	// expiry adds is the broker's half: QoS 1/2 messages for this client's
	// subscriptions are kept while it is away. A device that must not miss
	// them sets it (an hour, say) with a fixed ClientID, and with Store so
	// that the loop's half of the session outlives the process too: a
	// process that starts afresh against a session the broker kept could
	// have a new QoS 2 publish taken for a duplicate of one the broker
	// still holds under the same packet id.
	SessionExpiry time.Duration

	// Will is the message the broker publishes if the client vanishes.
	Will *Will

	// MaxInflight caps QoS 1/2 publishes awaiting acknowledgement (default
	// 100; with ProtocolVersion 4, 20); the broker's Receive Maximum lowers
	// it further. A 3.1.1 broker cannot announce a Receive Maximum, and
	// mosquitto 2 disconnects a 3.1.1 client with more QoS 2 publishes
	// unanswered than its max_inflight_messages (20 by default), hence the
	// lower default there.
	MaxInflight int
	// MaxQueued caps requests taken from the channel but not yet sent
	// (default 256). At the cap the loop stops reading the channel:
	// backpressure, never a drop; a QueueFull notification says so. With
	// SpoolBytes, it is the part of the queue kept in memory instead, and
	// the loop goes on reading.
	MaxQueued int
	// SpoolBytes, with a Store, lets the queue spill to the store beyond
	// MaxQueued, up to this many bytes of records (the offline spool):
	// the loop goes on reading the channel while offline with bounded
	// memory, the backlog survives a restart or a killed process, and it
	// is sent in order once connected. A request that does not fit is
	// reported as Dropped with ErrSpoolFull (math.MaxInt64: no budget but
	// the disk). Of a spooled request only its Tag stays in memory: the
	// notification of its completion carries the request rebuilt from its
	// packet, with that Tag (after a restart, without it). 0: no spool.
	SpoolBytes int64
	// MaxPacketSize is the largest packet the loop accepts from the broker
	// (default 16 MiB), announced in CONNECT. A larger one ends the
	// connection before any memory is allocated for it.
	MaxPacketSize uint32
	// ReceiveMaximum caps the QoS 1/2 messages the broker sends before they
	// are acknowledged (MQTT 5 Receive Maximum; 0: no cap, i.e. 65,535).
	// A cap also bounds what a broker resends after every reconnect. MQTT 5
	// only.
	ReceiveMaximum uint16
	// TopicAliasMaximum is the highest topic alias the broker may use in
	// publishes to this client (MQTT 5 Topic Alias Maximum, announced in
	// CONNECT; 0: none). A broker that uses aliases sends a repeated topic
	// once per connection; the loop resolves them, so Message.Topic is
	// always the topic. MQTT 5 only.
	TopicAliasMaximum uint16
	// OutgoingTopicAliases is how many topic aliases the loop may assign
	// to publishes it sends (0: none), within the broker's Topic Alias
	// Maximum (Connected.TopicAliasMaximum). The first publish to a topic
	// sends the topic and an alias, later ones the alias alone; when all
	// are taken, the least recently used one goes to the next new topic.
	// Aliases belong to one connection: they are assigned as packets are
	// written and never stored in the session, so a replay or a queued
	// publish starts afresh on the next connection. Topics shorter than 4
	// bytes are sent as they are. MQTT 5 only.
	OutgoingTopicAliases uint16
	// RequestResponseInformation asks the broker for Response Information
	// (the basis of response topics for request/response), reported in
	// Connected.ResponseInformation when the broker supports it. MQTT 5
	// only.
	RequestResponseInformation bool
	// ManualAcks: incoming QoS 1/2 messages are acknowledged only when the
	// user sends Message.Ack() (or calls EventLoop.Ack).
	ManualAcks bool

	// Reconnect says which connection failures are retried. The default
	// (the zero value), reconnect.AfterFirstSuccess, ends the run if the
	// first connection attempt fails (a wrong address or credentials show
	// at once) and afterwards retries every loss, with BackOff, so that a
	// broker restart or a network outage is survived; meanwhile requests
	// wait in the session (up to MaxQueued). reconnect.Never ends the run
	// at the first loss (Run continues the session later);
	// reconnect.Automatic retries the first attempt too (a device that may
	// boot before its network is up). Refusals that retrying cannot fix
	// (bad credentials, not authorized, unsupported protocol version,
	// banned) end the run under every policy. Each attempt moves to the
	// next of Servers.
	Reconnect reconnect.Policy
	// BackOff gives the delays between attempts (default: exponential
	// from 250 ms to 30 s with jitter, see reconnect.DefaultBackOff). It is
	// reset once a connection stayed up for HealthyAfter.
	BackOff backoff.BackOff
	// HealthyAfter is how long a connection must stay up for the back-off
	// to start over (default 10 s).
	HealthyAfter time.Duration
	// NoResubscribe turns off re-subscribing after reconnecting to a broker
	// that lost the session. By default the loop re-establishes every
	// subscription it holds.
	NoResubscribe bool
	// AckTimeout, if set, is how long a QoS 1/2 publish may wait for its
	// acknowledgement before the connection is presumed broken and
	// replaced (the session then replays it). 0 waits forever.
	AckTimeout time.Duration
	// NotifyQoS0 reports every QoS 0 publish too with a Published
	// notification (ReasonCode 0), once it is written to the connection,
	// so that every Publish ends in exactly one notification (Published,
	// RequestFailed or Dropped). Off by default: QoS 0 has no
	// acknowledgement to report.
	NotifyQoS0 bool
	// WakeAfterSend is the application's promise that every send on the
	// requests channel from a goroutine other than the one calling Next
	// is followed by a call to EventLoop.Wake (package client keeps it;
	// sends made between two calls of Next need none, the loop looks at
	// the channel before it waits). The loop then waits for the broker the way a
	// reader goroutine does, parked in the runtime's poller, instead of
	// in a select that also watches the channel and learns of arriving
	// bytes through SIGIO: a message that arrives now and then costs
	// less CPU, and an idle connection nothing (measured in the
	// journal). Acks, Close, Pause, Resume and the end of the run's
	// context wake it as before.
	//
	// It applies to TCP and Unix sockets with a buffered requests
	// channel, while the loop is driven by Next; other transports, an
	// unbuffered channel (its send waits for the loop, so the Wake would
	// never come) and NextContext wait as before. A request sent without
	// a Wake is taken when the loop next wakes: at the latest when the
	// keepalive is due. With a nil requests channel the loop waits this
	// way whatever this option says. Waiting for the context uses
	// context.AfterFunc, whose function the context package runs on a
	// goroutine of its own when the context ends.
	WakeAfterSend bool
	// DropQoS0WhileOffline discards QoS 0 publishes while there is no
	// connection (reported as Dropped) instead of queueing them.
	DropQoS0WhileOffline bool

	// Session continues a session from an earlier run or loop
	// (EventLoop.State, or state.Load of a saved file). Nil starts a new
	// one.
	Session *state.MqttState
	// Store makes the session durable for a process that may be killed:
	// the loop writes every change through it once per loop iteration,
	// before the packets that announce the change reach the wire (see
	// state/filestore for a file on disk). A store that holds a session
	// continues it. A store belongs to one session: the ClientID on the
	// servers it was used with, or on the broker SessionName names. It
	// continues under Servers that share an address with those (however
	// spelt: tcp:// or mqtt://, the default port written or not, a
	// trailing slash; a failover list in another order or with a server
	// added), and then records the new list; under others, or another
	// ClientID, New fails with ErrStoreMismatch. The loop does not close
	// the store.
	Store state.Store
	// SessionName names the session in Store instead of its servers, for
	// a broker or cluster whose addresses change (behind a load balancer,
	// moved to new hosts): the store continues under any Servers as long
	// as SessionName and ClientID stay the same. Set it from the start;
	// a store named by its servers does not continue under a name, nor
	// the other way round.
	SessionName string

	// TLSConfig configures mqtts://, wss:// and quic:// (server
	// verification, a custom CA in RootCAs, client certificates for mTLS,
	// ServerName for SNI). Nil verifies the server against the system
	// roots with the host name of the URL. Verification is skipped only if
	// InsecureSkipVerify is set. The loop never modifies it; it adds a
	// session cache (for resumption and 0-RTT) kept across reconnects when
	// ClientSessionCache is nil.
	TLSConfig *tls.Config
	// WebSocketHeader is sent with the upgrade request of ws:// and wss://
	// (for example Authorization). The subprotocol is always "mqtt"; the
	// path comes from the server URL (default /mqtt).
	WebSocketHeader http.Header
	// QUIC0RTT sends CONNECT in QUIC 0-RTT data when reconnecting to a
	// quic:// server this loop has connected to before, saving a round
	// trip. 0-RTT data can be replayed by an attacker on the network; the
	// broker sees at most a repeated CONNECT. If the server rejects 0-RTT,
	// CONNECT is resent after the handshake. Connected.Used0RTT tells
	// which happened.
	QUIC0RTT bool
	// QUICHandshakeTimeout bounds the QUIC handshake, after which the next
	// server is tried (default 5 s, within ConnectTimeout). A UDP port the
	// network reports unreachable (ICMP) fails at once on Linux, without
	// waiting for it.
	QUICHandshakeTimeout time.Duration
	// QUICNoMigration turns off QUIC connection migration. By default,
	// when a quic:// connection's path stops answering (QUIC's loss
	// detection finds it silent, a PINGREQ or, with AckTimeout, a
	// publish goes unanswered) or EventLoop.Handover is called, the loop
	// first moves the connection to a new UDP socket and carries on with
	// the same MQTT session (PathChanged), and only if no new path is
	// validated within QUICMigrationTimeout replaces the connection. A
	// connection keeps the UDP socket of every path it left (quic-go
	// cannot release it earlier), so it moves at most
	// netio.MaxQUICPaths-1 times; the next change reconnects.
	QUICNoMigration bool
	// QUICMigrationTimeout bounds a path change (default 5 s).
	QUICMigrationTimeout time.Duration
	// QUICStreams turns on multi-stream MQTT over QUIC, as EMQX defines
	// it, for quic:// connections: it returns the stream a Publish,
	// Subscribe or Unsubscribe goes on, 0 for the control stream or 1 to
	// MaxQUICDataStreams for a data stream (opened on first use), so that
	// a large or slow flow does not hold up the others (QUIC orders each
	// stream on its own; a lost packet delays only its stream). Map by
	// topic, by QoS, or by anything the request carries, such as its Tag;
	// what must stay in order must share a stream. Acknowledgements travel
	// on the stream of the packet they answer, messages arrive on the
	// stream of the subscription they match, and CONNECT, PINGREQ and
	// DISCONNECT keep to the control stream; the replay after a reconnect
	// keeps each stream's order. Requests the function maps outside 0 to
	// MaxQUICDataStreams fail with ErrInvalidRequest. Nil (the default)
	// carries everything on the control stream (single-stream mode, which
	// every MQTT-over-QUIC broker speaks); other transports ignore it.
	QUICStreams func(r Request) int
	// KeyLogWriter receives TLS secrets in NSS key log format, so that
	// Wireshark can decrypt a capture. Anyone holding them can read the
	// traffic: set it only for debugging. Nil (the default) logs no keys.
	KeyLogWriter io.Writer
	// KeyLogFromEnv appends TLS secrets to the file named by the
	// SSLKEYLOGFILE environment variable, if it is set (the convention of
	// browsers and curl). Off by default; KeyLogWriter takes precedence.
	KeyLogFromEnv bool

	// Authenticator, if set, carries out MQTT 5 enhanced authentication
	// (AUTH packets) at every CONNECT, and re-authentication on a
	// Reauthenticate request: see Authenticator, and package scram for
	// SCRAM-SHA-256. It works beside Username/Password or Credentials,
	// which still go into CONNECT. MQTT 5 only.
	Authenticator Authenticator

	// Proxy is the URL of a proxy to reach the servers through:
	//
	//	socks5://[user:password@]host[:1080]   SOCKS5, server names resolved locally
	//	socks5h://[user:password@]host[:1080]  SOCKS5, server names resolved by the proxy
	//	http://[user:password@]host[:80]       HTTP CONNECT
	//
	// It carries mqtt://, mqtts://, ws:// and wss:// (TLS and WebSocket
	// run inside the tunnel, end to end with the broker); unix:// servers
	// are reached directly, and quic:// ones fail (QUIC is UDP), so the next
	// of Servers is tried. The tunnel is the proxy's TCP socket: readiness
	// stays as fast as without a proxy. Refused proxy credentials end the
	// attempt with ErrProxyAuth, a proxy that cannot reach the broker with
	// ErrProxy; the proxy's password never appears in errors or logs.
	Proxy string
	// ProxyFromEnvironment, when Proxy is empty, takes the proxy from the
	// environment as curl does: HTTP_PROXY for ws://, HTTPS_PROXY for
	// wss://, ALL_PROXY for those without their own and for mqtt:// and
	// mqtts://, and NO_PROXY for the hosts to reach directly (see
	// netio.ProxyFromEnvironment). Off by default: a library should not
	// change its route because of a variable set for other programs.
	ProxyFromEnvironment bool

	// Dial, if set, opens the byte transport to a server instead of the
	// built-in transports: a custom transport, a connection through a
	// tunnel, or an in-memory connection in tests. server is one of Servers
	// as written; ctx carries the connect deadline (ConnectTimeout). The
	// loop then speaks MQTT over the returned Conn exactly as over its own
	// (netio.WrapConn turns any net.Conn into one; a TCP or Unix socket
	// keeps the loop's fast readiness). Servers are still parsed by New, so
	// they must be URLs of a supported scheme.
	Dial func(ctx context.Context, server string) (netio.Conn, error)

	// Logger receives debug records of every packet in and out (never
	// passwords; payloads truncated). Nil logs nothing.
	Logger *slog.Logger
}

// Will is the will message of a connection.
type Will struct {
	Topic      string
	Payload    []byte
	QoS        byte
	Retain     bool
	Delay      time.Duration // MQTT 5 Will Delay Interval, rounded up to whole seconds, at most 2^32-1 s (MQTT 5 only)
	Properties *Properties   // MQTT 5 only
}

// SessionNeverExpires as Options.SessionExpiry keeps the session forever.
const SessionNeverExpires = time.Duration(math.MaxUint32) * time.Second

// Defaults applied by New.
const (
	DefaultKeepAlive      = 60 * time.Second
	DefaultPingTimeout    = 10 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultMaxInflight    = 100
	DefaultMaxInflight311 = 20 // MaxInflight with ProtocolVersion 4
	DefaultMaxQueued      = 256
	DefaultMaxPacketSize  = 16 << 20
	DefaultHealthyAfter   = 10 * time.Second
)

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return o, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if len(o.Servers) == 0 {
		return bad("no server given")
	}
	switch o.ProtocolVersion {
	case 0:
		o.ProtocolVersion = 5
	case 4, 5:
	default:
		return bad("ProtocolVersion %d (must be 5 for MQTT 5 or 4 for MQTT 3.1.1)", o.ProtocolVersion)
	}
	if o.ProtocolVersion == 4 {
		if err := o.check311(); err != nil {
			return o, err
		}
	}
	for _, s := range o.Servers {
		if _, err := netio.ParseServer(s); err != nil {
			return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	switch {
	case o.KeepAlive == 0:
		o.KeepAlive = DefaultKeepAlive
	case o.KeepAlive < 0:
		o.KeepAlive = 0
	case o.KeepAlive > 65535*time.Second:
		return bad("keepalive %v is over 65535 s", o.KeepAlive)
	case o.KeepAlive < time.Second:
		return bad("keepalive %v is under one second", o.KeepAlive)
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = DefaultPingTimeout
		if o.KeepAlive > 0 && o.KeepAlive < o.PingTimeout {
			o.PingTimeout = o.KeepAlive
		}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.SessionExpiry < 0 || o.SessionExpiry > SessionNeverExpires {
		return bad("session expiry %v out of range", o.SessionExpiry)
	}
	if o.SessionExpiry > 0 && o.ClientID == "" {
		return bad("a session that outlives the connection (SessionExpiry %v) needs a ClientID", o.SessionExpiry)
	}
	if err := optionRules(o.ProtocolVersion).options(&o); err != nil {
		return o, err
	}
	switch {
	case o.MaxInflight == 0 && o.ProtocolVersion == 4:
		o.MaxInflight = DefaultMaxInflight311
	case o.MaxInflight == 0:
		o.MaxInflight = DefaultMaxInflight
	case o.MaxInflight < 0 || o.MaxInflight > 65535:
		return bad("MaxInflight %d out of range 1-65535", o.MaxInflight)
	}
	switch {
	case o.MaxQueued == 0:
		o.MaxQueued = DefaultMaxQueued
	case o.MaxQueued < 0:
		return bad("MaxQueued %d is negative", o.MaxQueued)
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = DefaultMaxPacketSize
	}
	if o.Credentials != nil && (o.Username != "" || o.Password != nil) {
		return bad("Credentials and Username/Password are both set: the hook supplies them")
	}
	if o.SpoolBytes < 0 {
		return bad("SpoolBytes %d is negative", o.SpoolBytes)
	}
	if o.SpoolBytes != 0 && o.Store == nil {
		return bad("SpoolBytes needs a Store: the spool lives in it")
	}
	if o.Store != nil {
		if o.Session != nil {
			return bad("Session and Store are both set: a store holds its own session")
		}
		if o.ClientID == "" {
			return bad("a Store needs a ClientID: a broker-assigned id cannot be resumed")
		}
	}
	if o.Proxy != "" {
		if _, err := netio.ParseProxy(o.Proxy); err != nil {
			return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	if o.Dial != nil && (o.Proxy != "" || o.ProxyFromEnvironment) {
		return bad("Dial and a proxy are both set: Dial replaces the built-in transports, proxies included")
	}
	if !o.Reconnect.Valid() {
		return bad("unknown reconnect policy %v", o.Reconnect)
	}
	if o.HealthyAfter <= 0 {
		o.HealthyAfter = DefaultHealthyAfter
	}
	if o.AckTimeout < 0 {
		return bad("AckTimeout %v is negative", o.AckTimeout)
	}
	switch {
	case o.QUICStreams != nil && o.TopicAliasMaximum != 0:
		// EMQX gives each data stream its own copy of the session, topic
		// aliases included: one table for the connection would resolve
		// one stream's alias with another's topic.
		return bad("TopicAliasMaximum with QUICStreams: the broker's topic aliases are kept per data stream")
	case o.QUICMigrationTimeout < 0:
		return bad("QUICMigrationTimeout %v is negative", o.QUICMigrationTimeout)
	case o.QUICMigrationTimeout == 0:
		o.QUICMigrationTimeout = DefaultQUICMigrationTimeout
	}
	if o.QUICHandshakeTimeout < 0 {
		return bad("QUICHandshakeTimeout %v is negative", o.QUICHandshakeTimeout)
	}
	return o, nil
}

// check311 refuses options that MQTT 3.1.1 cannot express.
func (o Options) check311() error {
	only5 := func(what string) error {
		return fmt.Errorf("%w: %w: %s", ErrInvalidOptions, ErrMQTT5Only, what)
	}
	switch {
	case o.SessionExpiry != 0:
		return only5("SessionExpiry (3.1.1 has no session expiry: leave it 0; CleanStart false keeps the session on the broker)")
	case o.ReceiveMaximum != 0:
		return only5("ReceiveMaximum")
	case o.RequestResponseInformation:
		return only5("RequestResponseInformation")
	case o.TopicAliasMaximum != 0:
		return only5("TopicAliasMaximum")
	case o.OutgoingTopicAliases != 0:
		return only5("OutgoingTopicAliases")
	case o.Authenticator != nil:
		return only5("Authenticator (enhanced authentication)")
	case o.Will != nil && o.Will.Delay != 0:
		return only5("Will.Delay")
	case o.Will != nil && !o.Will.Properties.empty():
		return only5("Will.Properties")
	case o.Password != nil && o.Username == "":
		return only5("a Password without a Username")
	case o.ClientID == "" && !o.CleanStart:
		return only5("an empty ClientID with CleanStart false (3.1.1 allows an empty client identifier only for a clean session)")
	}
	return nil
}
