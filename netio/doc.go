// Package netio carries the bytes of MQTT connections for the event loop
// without starting goroutines: it dials every transport the loop speaks and
// tells the loop when bytes may have arrived.
//
// # Transports
//
// Dial takes a server URL (ParseServer lists the schemes): mqtt:// (TCP),
// mqtts:// (TLS), ws:// and wss:// (WebSocket, subprotocol "mqtt"),
// quic:// (MQTT over QUIC, ALPN "mqtt", one control stream) and unix://.
// Layers compose: wss:// is WebSocket over TLS over a TCP socket, each a
// Conn over the one below.
//
// # Waiting without a goroutine
//
// The event loop runs on its caller's goroutine. It cannot park a reader
// goroutine on the socket, so every transport implements Conn: a
// non-blocking read, a read that parks in the Go runtime's network poller
// until a deadline (the fastest way to wait for a reply that is expected
// soon), and a readiness notification (Arm) that can be selected on
// together with the user's request channel. On Unix sockets readiness is
// SIGIO through one process-wide readiness set (epoll or kqueue) that
// wakes only the connections whose sockets are ready, however many a
// process runs; over QUIC it comes from quic-go's tracer; any other
// net.Conn gets a documented polling fallback (WrapConn, NewPollConn).
//
// The MQTT codec and framing that run over a Conn live in the module's
// internal/wire package.
package netio
