// Package state holds an MQTT session as data, MqttState, and the pure
// transitions of the protocol: what to send for a request, what a packet
// from the broker means, what to replay after a reconnect.
//
// It does no I/O, reads no clock and starts no goroutines. The event loop
// feeds it packets and requests and writes out what it returns; a test can
// do the same with no network at all. The packet model is the one of
// github.com/eclipse/paho.golang/packets.
//
// An MqttState belongs to one event loop at a time and is not safe for
// concurrent use.
//
// A session outlives connections (Connected says what to replay) and
// processes: Save and Load write and read it in a versioned format
// (FORMAT.md), and a Store keeps it durable while it changes (LoadStore or
// AttachStore, then Commit once per event-loop iteration), in memory
// (MemoryStore) or in a file (package state/filestore). A store only
// keeps records; this package encodes, checks and rebuilds them.
package state
