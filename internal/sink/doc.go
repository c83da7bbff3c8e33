// Package sink is a minimal MQTT "acking sink" broker for benchmarks: it
// answers every packet a client sends as cheaply as possible and routes
// nothing, so that a client benchmark measures the client, not the broker.
//
// It listens on 127.0.0.1:0 and serves each connection with one goroutine
// that parses packets by hand out of a bufio.Reader and writes the answers
// into a bufio.Writer, flushed only when no more input is buffered (so a
// burst of pipelined packets is answered with one write):
//
//	CONNECT     → CONNACK (success; MQTT 5: no properties, or Receive
//	              Maximum when Options.ReceiveMaximum is set)
//	PUBLISH     → QoS 0: nothing; QoS 1: PUBACK; QoS 2: PUBREC
//	PUBREL      → PUBCOMP
//	SUBSCRIBE   → SUBACK granting the requested QoS
//	UNSUBSCRIBE → UNSUBACK (success)
//	PINGREQ     → PINGRESP
//	DISCONNECT  → the connection is closed
//
// PUBACK, PUBREC and PUBCOMP from the client are ignored. Acknowledgements
// use the short forms (success, no properties). MQTT 3.1.1 and 5 clients
// are served.
//
// Streaming: a SUBSCRIBE whose first filter is "sink/stream/N/SIZE" (N and
// SIZE decimal) is answered with its SUBACK and then N QoS 0 PUBLISH
// packets on the topic "sink/stream/N/SIZE" with SIZE-byte payloads. They
// are encoded once into a buffer of about 64 KiB and written in whole
// buffers by a second goroutine of the connection, for receive benchmarks.
//
// Everything a Sink starts stops when Close returns.
package sink
