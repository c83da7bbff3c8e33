// Package sim is a deterministic simulation of a network and an MQTT 5
// broker, in which the real eventloop.EventLoop runs: no model of the
// client, the product itself, with its throttle, its reconnect rotation,
// its store and everything else it does.
//
// # How the loop runs in simulated time
//
// Run must be called inside a testing/synctest bubble (synctest.Test): the
// bubble's clock is the simulation's virtual time. The loop runs on a
// goroutine of its own, as an application runs it (calling Next and
// handling the notifications), with Options.Dial returning an in-memory
// netio.Conn (memConn) whose readiness the simulated network signals:
// ReadWait and WaitReadable block on channels and a timer, and Arm hands
// out a channel the network signals when bytes arrive or the connection
// ends. Every wait of the loop is therefore on channels and timers, which
// synctest sees as durably blocked, and the loop's keepalive, ack timeout,
// connect timeout and back-off run on the virtual clock. memConn is also a
// netio.WaitInterrupter: Wake, Ack, Resume and Close cut the loop's waits
// short as they do on a socket. With Config.WakeAfterSend (half the
// seeds) the loop has Options.WakeAfterSend, and waits for the broker in
// WaitReadable, the poller wait of TCP and Unix sockets, rather than in
// the select over the readiness; the driver, which feeds the requests
// channel from its own goroutine, then calls Wake after its sends.
//
// The driver (Run's goroutine) holds the network, the broker and the
// script: a priority queue of events ordered by virtual time, ties broken
// by the order they were scheduled. It acts only when every other
// goroutine of the bubble is durably blocked (synctest.Wait), runs the
// events due, and sleeps until the next one (or until the loop schedules
// an earlier one by writing or dialing). The loop and the driver thus
// never run at once, and every random choice comes from one PCG source
// seeded by Config.Seed (the loop's reconnect jitter too:
// Options.BackOff is cenkalti's exponential back-off with jitter drawn
// from the seed). A run is a function of its Config: the same seed gives
// the same event trace, which TestDeterminism checks by hashing it. A
// failing seed prints the command that replays it:
//
//	go test ./internal/sim -run TestSimulation -seed=123 -v
//	go test ./internal/sim -run TestSimulation -seed=123 -events   # with the full event trace
//
// CI runs 300 seeds (30 with -short); -sweep runs 10,000, -seeds=N any
// number, -msgs=N sets the publishes per seed.
//
// # The network
//
// Each write of the loop is one segment, decoded on the way (the packets
// feed the broker and the checks), each segment with its own delay,
// delivered in order within a connection (TCP): never duplicated, never
// reordered; reordering happens only across connections. Faults, all
// drawn from the seed:
//
//   - cuts: both directions lose what is in flight and the connection is
//     closed; each peer learns of it after a notice delay (the loop reads
//     EOF);
//   - storms: after a cut, the next connections are cut a few packets after
//     CONNACK, in the middle of the replay; or every connection is cut after
//     N packets;
//   - half-open periods: one or both directions silently lose everything,
//     nobody is told; only keepalive finds out;
//   - delay spikes (head-of-line blocking), refused dials (EOF after a
//     delay), dials nobody answers (connect timeout);
//   - invalid packets from the broker (a CONNACK or a PINGREQ on an
//     established connection, a PUBLISH without topic or with QoS 3, AUTH);
//   - broker restarts: every connection closed, the session lost with
//     probability Config.SessionLoss;
//   - client process restarts: the process is killed at the loop's next
//     write (after its Commit, just before or just after the bytes reach
//     the wire) or while it waits, and a new loop continues from the Options.Store the process
//     had (state.MemoryStore, as it was at the kill), or from its session
//     through Save and Load.
//
// A side that closes a connection (or whose process dies) loses what was in
// flight towards it, while what it had written still arrives. Duplicates
// come from where they come from in MQTT: the loop's replay with DUP after
// a reconnect, the broker's redelivery of unacknowledged messages, and
// publishes sent again as new after the broker lost the session.
//
// # The application
//
// It subscribes to "b2c", then publishes the script's messages to "c2b"
// (QoS 0, 1, 2) through the requests channel, at the script's times. With
// Config.ManualAcks it acknowledges each QoS 1/2 message itself, late and
// out of order (Message.Ack as a request). A run the reconnect policy ends
// (ErrConnectionLost) is run again after Config.AppRestart.
//
// # The broker
//
// A small MQTT 5 broker for one client (see broker): QoS 1 delivered on
// every arrival and PUBACKed; QoS 2 deduplicated by packet id until PUBREL;
// messages to the client routed while the session holds the subscription,
// queued while the client is away, sent within the client's Receive
// Maximum and resent (DUP, PUBREL) after a reconnect with the session kept;
// keepalive enforced at 1.5 ×; session takeover. In some configurations it
// loses the session on reconnects (session present = 0).
//
// # Invariants
//
// During the run:
//   - the loop closes a connection only when it has a reason: never a
//     healthy one (keepalive, the ack timeout and protocol errors must not
//     fire on a working connection with a correct broker), and always one
//     on which an invalid packet arrived, before it waits again;
//   - a PUBLISH carries DUP exactly when it is a retransmission within the
//     broker session the loop knows of, its topic (no alias), and the
//     loop's publishes arrive in increasing order on every connection
//     (replays first, in their original order, then new ones);
//   - no QoS 2 packet id is reused while the broker awaits its PUBREL, and
//     no publish exceeds the broker's Receive Maximum;
//   - a publish completes (Published) only after the broker received it;
//     the broker gets a message's PUBACK/PUBREC only after the application
//     acknowledged it (on delivery, or with Message.Ack);
//   - a half-open connection is detected within keepalive + ping timeout
//     of the moment the path went silent (exact, virtual time); when only
//     the client→broker path is silent, within 1.5 × keepalive (the
//     broker's keepalive) + the longest packet delay + the notice delay if
//     that is larger;
//   - every connection attempt happens exactly the delay the loop
//     announced in Reconnecting after the loss, each delay lies within the
//     exponential back-off's bounds (restarted after a healthy
//     connection), never 0;
//   - after a session loss the subscription is re-established before
//     anything is published;
//   - a session rebuilt after a restart equals the one committed.
//
// At the end, after faults stop and everything has settled (checked within
// Config.Drain):
//   - every QoS 1 publish of the application was delivered by the broker at
//     least once, every QoS 2 exactly once, every QoS 0 at most once; each
//     QoS 1/2 publish completed exactly once at the application;
//   - every message routed to the client's session reached the application
//     at least once (QoS 1) or was acknowledged by it exactly once (QoS 2;
//     a QoS 2 message is redelivered only to a new process that had not
//     acknowledged it), nothing was delivered that was not routed;
//   - nothing is queued or in flight anywhere, the subscription is in place.
//
// What MQTT 5 itself does not guarantee is not asserted: when the broker
// loses a session (session present = 0) the messages queued or in flight
// to the client are gone (only at-most-once is checked for them), and a
// QoS 2 publish whose PUBLISH the broker had received but whose PUBREC had
// not reached the client is sent again by the client as a new message:
// exactly-once across a lost broker session is not guaranteed by MQTT 5
// (such duplicates are counted in Stats.C2BDupQoS2).
//
// # Known issue
//
// Phantom session (Stats.PhantomSessions; a violation under Config.Strict,
// reproduced by TestKnownIssues): the broker loses the session at a
// CONNECT whose CONNACK (session present = 0) is lost; it creates a new
// session, and on the next connection truthfully answers session present
// = 1 — about the new, empty session. The loop cannot see it from the
// CONNACK: it keeps its subscriptions and incoming QoS 2 ids, so the
// subscription is silently gone, and stale QoS 2 ids swallow new messages
// that reuse them. Re-subscribing when a CONNECT went unanswered since the
// last CONNACK would guard against the first part.
package sim
