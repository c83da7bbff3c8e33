package eventloop

import (
	"errors"
	"fmt"

	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/state"
)

// Errors that end a run. Next returns one of them (wrapped with detail)
// after the run's last notification; test with errors.Is.
var (
	// ErrRequestsDone: the requests channel was closed and every request
	// taken from it completed (each QoS 1/2 publish was acknowledged).
	ErrRequestsDone = errors.New("mqttloop: requests channel closed and every request completed")
	// ErrDisconnected: a Disconnect request ended the run; DISCONNECT was
	// sent and the connection closed.
	ErrDisconnected = errors.New("mqttloop: disconnected on request")
	// ErrConnectionLost: the connection failed or was lost and the
	// reconnect policy does not retry. The cause is wrapped too.
	ErrConnectionLost = errors.New("mqttloop: connection lost")
	// ErrStore: the session store (Options.Store) failed; the run ends
	// because durability can no longer be promised.
	ErrStore = errors.New("mqttloop: session store failed")
	// ErrStoreMismatch: Options.Store holds the session of another broker
	// or client id.
	ErrStoreMismatch = state.ErrStoreMismatch
	// ErrStopped: a Shutdown request ended the run, the run's context
	// ended (the context's error is wrapped too, so errors.Is(err,
	// context.Canceled) also holds) or Close was called.
	ErrStopped = errors.New("mqttloop: run stopped")
)

// Causes of a lost connection, wrapped by ErrConnectionLost and carried by
// the Disconnected notification.
var (
	// ErrKeepAliveTimeout: nothing arrived within the ping timeout after a
	// PINGREQ; the connection is presumed dead (half-open).
	ErrKeepAliveTimeout = errors.New("mqttloop: no answer to PINGREQ within the ping timeout")
	// ErrProtocol: the broker broke the protocol (an ack for an unknown
	// packet id, an unexpected packet, ...).
	ErrProtocol = state.ErrProtocol
	// ErrMalformedPacket: the broker sent bytes that are not a valid MQTT
	// packet.
	ErrMalformedPacket = wire.ErrMalformedPacket
	// ErrPacketTooLarge: a packet exceeds the maximum packet size — an
	// incoming one ours (the connection ends), or an outgoing one the
	// broker's (the request fails, the loop goes on).
	ErrPacketTooLarge = wire.ErrPacketTooLarge
	// ErrConnectRefused: the broker refused the connection in CONNACK; a
	// *ReasonCodeError carries the reason code.
	ErrConnectRefused = errors.New("mqttloop: connection refused by the broker")
	// ErrBrokerDisconnect: the broker sent DISCONNECT; a *ReasonCodeError
	// carries the reason code.
	ErrBrokerDisconnect = errors.New("mqttloop: broker sent DISCONNECT")
	// ErrTLSHandshake: the TLS handshake with an mqtts:// (or wss://)
	// server failed. crypto/tls's error is wrapped too, so the cause can be
	// told apart with errors.As: x509.UnknownAuthorityError (a server
	// certificate from a CA not in TLSConfig.RootCAs or the system roots),
	// x509.HostnameError (a certificate for another host; see
	// TLSConfig.ServerName), x509.CertificateInvalidError (Reason
	// x509.Expired: an expired certificate), tls.AlertError (an alert the
	// server sent). It also wraps the context's error when ConnectTimeout
	// ended the handshake.
	ErrTLSHandshake = netio.ErrTLSHandshake
	// ErrClientCertificateRequired: the server requires a client
	// certificate (mutual TLS) and TLSConfig has none. With TLS 1.3 the
	// server refuses only after the handshake, so this arrives while
	// waiting for CONNACK; it wraps ErrTLSHandshake and the server's
	// tls.AlertError either way.
	ErrClientCertificateRequired = netio.ErrClientCertificateRequired
	// ErrProxyAuth: the proxy (Options.Proxy) refused its credentials or
	// requires some.
	ErrProxyAuth = netio.ErrProxyAuth
	// ErrProxy: the proxy could not or would not connect to the broker, or
	// does not speak its protocol; quic:// servers fail with it too.
	ErrProxy = netio.ErrProxy
)

// Causes specific to quic:// connections, carried by Disconnected (and
// wrapped by ErrConnectionLost) like the other causes above. Each wraps
// quic-go's own error too.
var (
	// ErrQUICHandshakeTimeout: no QUIC handshake within
	// Options.QUICHandshakeTimeout, typically because UDP is blocked; the
	// next of Options.Servers is tried.
	ErrQUICHandshakeTimeout = netio.ErrQUICHandshakeTimeout
	// ErrQUICIdleTimeout: nothing arrived from the broker within the QUIC
	// idle timeout (at least 1.5 × KeepAlive).
	ErrQUICIdleTimeout = netio.ErrQUICIdleTimeout
	// ErrQUICStatelessReset: the broker no longer knew the connection (it
	// restarted) and answered with a QUIC stateless reset.
	ErrQUICStatelessReset = netio.ErrQUICStatelessReset
	// ErrQUICALPN: the server does not speak MQTT over QUIC (ALPN "mqtt").
	ErrQUICALPN = netio.ErrQUICALPN
	// ErrQUICClosedByPeer: the broker closed the QUIC connection normally
	// (application error code 0).
	ErrQUICClosedByPeer = netio.ErrQUICClosedByPeer
	// ErrQUICControlStreamDown: the broker closed the QUIC connection with
	// application error code 1 (control stream down) or reset the control
	// stream.
	ErrQUICControlStreamDown = netio.ErrQUICControlStreamDown
	// ErrQUICOverloaded: the broker closed the QUIC connection with
	// application error code 2 (overloaded).
	ErrQUICOverloaded = netio.ErrQUICOverloaded
	// ErrQUICApplicationError: the broker closed the QUIC connection with
	// another application error code.
	ErrQUICApplicationError = netio.ErrQUICApplicationError
)

// Errors of requests and options. A request that fails is reported by a
// RequestFailed notification and the loop goes on.
var (
	// ErrInvalidTopic: a topic name or filter breaks the MQTT rules.
	ErrInvalidTopic = state.ErrInvalidTopic
	// ErrInvalidQoS: a QoS outside 0-2.
	ErrInvalidQoS = state.ErrInvalidQoS
	// ErrNotSupported: the broker said in CONNACK that it does not support
	// what the request needs (retained messages, this QoS).
	ErrNotSupported = state.ErrNotSupported
	// ErrUnknownPacketID: an Ack for a message that awaits none.
	ErrUnknownPacketID = state.ErrUnknownPacketID
	// ErrStaleAck: an Ack for a message from a broker session that has
	// since been lost; the broker will deliver the message again.
	ErrStaleAck = state.ErrStaleAck
	// ErrInvalidRequest: a request the loop does not know, an empty one, or
	// one with a field MQTT cannot carry (see "Validation" in the package
	// documentation); the error names the field. Nothing is ever
	// truncated or wrapped round to fit.
	ErrInvalidRequest = errors.New("mqttloop: invalid request")
	// ErrInvalidOptions: New refused the options.
	ErrInvalidOptions = errors.New("mqttloop: invalid options")
	// ErrMQTT5Only: an option or request needs a feature that only MQTT 5
	// has (properties, session expiry, reason codes, subscription options
	// beyond QoS, ...) while Options.ProtocolVersion is 4 (MQTT 3.1.1). It
	// comes wrapped by ErrInvalidOptions (from New) or ErrInvalidRequest
	// (in RequestFailed).
	ErrMQTT5Only = errors.New("mqttloop: MQTT 5 only, not available with ProtocolVersion 4 (MQTT 3.1.1)")
	// ErrUnsupportedScheme: a server URL with a scheme no transport serves.
	ErrUnsupportedScheme = netio.ErrUnsupportedScheme
	// ErrOffline: the request was dropped because the loop had no
	// connection (QoS 0 with Options.DropQoS0WhileOffline).
	ErrOffline = errors.New("mqttloop: offline")
	// ErrAckTimeout: a QoS 1/2 publish went unacknowledged for
	// Options.AckTimeout; the connection is presumed broken and replaced
	// (MQTT 5 forbids resending on the same connection).
	ErrAckTimeout = errors.New("mqttloop: publish not acknowledged within the ack timeout")
	// ErrRefusedByBroker: the broker answered a request with a failure
	// reason code; a *ReasonCodeError carries it.
	ErrRefusedByBroker = errors.New("mqttloop: refused by the broker")
	// ErrWaitEnded: the context given to Events.NextContext ended before a
	// notification was ready. The run goes on; the context's error is
	// wrapped too.
	ErrWaitEnded = errors.New("mqttloop: wait ended, the run goes on")
	// ErrNotRunning: EventLoop.Ack was called while no run was in
	// progress (before Run, or after Next returned the run's error).
	ErrNotRunning = errors.New("mqttloop: no run in progress")
)

// ReasonCodeError is an MQTT reason code of 0x80 or more sent by the broker,
// with the packet that carried it. It unwraps to ErrConnectRefused (CONNACK),
// ErrBrokerDisconnect (DISCONNECT) or ErrRefusedByBroker (acks).
type ReasonCodeError struct {
	Packet       string // "CONNACK", "DISCONNECT", "PUBACK", "PUBREC", "SUBACK", ...
	Code         byte
	ReasonString string // the broker's Reason String property, if any
	// ServerReference is the broker's Server Reference property, if any:
	// with "use another server" (0x9C) or "server moved" (0x9D), the
	// server to use instead (its format is the broker's).
	ServerReference string
}

// Error describes the code.
func (e *ReasonCodeError) Error() string {
	s := fmt.Sprintf("mqttloop: %s reason code 0x%02X (%s)", e.Packet, e.Code, ReasonCodeName(e.Code))
	if e.ReasonString != "" {
		s += ": " + e.ReasonString
	}
	return s
}

// Unwrap returns the sentinel for the packet kind.
func (e *ReasonCodeError) Unwrap() error {
	switch e.Packet {
	case "CONNACK":
		return ErrConnectRefused
	case "DISCONNECT":
		return ErrBrokerDisconnect
	}
	return ErrRefusedByBroker
}

// ReasonCodeName returns the MQTT 5 name of a reason code.
func ReasonCodeName(code byte) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return "unknown reason code"
}

var reasonNames = map[byte]string{
	0x00: "success",
	0x01: "granted QoS 1",
	0x02: "granted QoS 2",
	0x04: "disconnect with will message",
	0x10: "no matching subscribers",
	0x11: "no subscription existed",
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "QoS not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded",
	0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}
