// Package keepalive decides when an MQTT client must send PINGREQ and when a
// connection is dead. It is pure: it never reads the clock (the caller passes
// the time in) and starts no goroutines, so it can be tested with a fake
// clock.
//
// One timer serves both directions. A PINGREQ becomes due when either
// direction has been quiet for a keepalive period:
//
//   - the client has sent nothing (a client that only receives, e.g. a QoS 0
//     flood, still satisfies the broker's keepalive), or
//   - the client has received nothing (a client that only sends still finds
//     out that the broker is gone).
//
// The PINGREQ goes out a little before the period ends (a quarter of it, at
// most one second), so that network latency or a broker that enforces the
// keepalive strictly — mochi v2.7.9 grants keepalive + keepalive/2 in whole
// seconds, exactly 1 s for a 1 s keepalive — never sees it late.
//
// After a PINGREQ, a connection from which nothing at all arrives for the
// ping timeout is dead: half-open connections are detected within
// keepalive + ping timeout. Any packet received, not only PINGRESP, proves
// the broker alive, so a busy connection is never dropped for a late
// PINGRESP.
package keepalive
