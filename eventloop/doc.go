// Package eventloop is an MQTT 5 and MQTT 3.1.1 client whose whole
// connection lifecycle is one event loop running on the caller's goroutine.
//
//	loop, err := eventloop.New(eventloop.Options{Servers: []string{"mqtt://127.0.0.1:1883"}})
//	events := loop.Run(ctx, requests) // requests: any <-chan eventloop.Request
//	for {
//		ev, err := events.Next() // all protocol work happens in here
//		if err != nil {
//			break // the run ended; err says why
//		}
//		// handle ev: Connected, Message, Published, ...
//	}
//	saved := loop.State() // the session, for the next run or loop
//
// The loop starts no goroutines. It makes progress only inside Next: it
// reads and handles what the broker sent, takes requests from the channel
// while its window has room, writes, keeps the connection alive, and waits
// (on the socket, the channel, the context and its timers) when there is
// nothing to do. Not calling Next is backpressure: nothing is read.
//
// # Requests
//
// Send requests on the channel given to Run: Publish, Subscribe,
// Unsubscribe, Ack (manual acknowledgement, Options.ManualAcks),
// Disconnect, Shutdown, Pause, Resume, Throttle and Reauthenticate. A request that cannot
// be carried out (an invalid topic, too large for the broker, a feature
// the protocol version lacks) ends in a RequestFailed notification and the
// loop goes on. Close, Resume and Ack (EventLoop.Ack, for manual acks
// from worker goroutines, never blocked behind the channel) may be called
// from any goroutine.
//
// # Notifications
//
// Next returns Connected (with what the broker's CONNACK announced),
// Message, Published (every QoS 1 or 2 publish ends in exactly one, with
// the request and its Tag), Subscribed, Unsubscribed, RequestFailed,
// Disconnected, Reconnecting, Dropped, QueueFull, Reauthenticated and
// PathChanged.
//
// # One goroutine, with deadlines
//
// Events.NextContext is Next with a limit on the wait: when its context
// ends first it returns ErrWaitEnded and the run goes on, so the goroutine
// driving the loop can time out a request (waiting for a reply with a
// deadline), do periodic work between notifications, or stop waiting to
// do something else, with no other goroutine. EventLoop.Status reports the
// connection, the backlog and traffic counters to any goroutine (health
// checks, metrics).
//
// # User properties
//
// MQTT 5 user properties are UserProperties values, in requests, wills,
// credentials and notifications alike: make them with
// UserProps("name", "value", ...), read them with All, Get and Len. They
// are compact (one string for every pair), so a message stuffed with user
// properties costs no more memory than it took on the wire: whatever a
// broker sends, what a received packet costs the loop stays a small
// multiple of its size (at most about 8 times, counting the read buffer
// grown for it; 3.4 times for one made of user properties).
//
// # Connecting in deployments
//
// Options.Credentials supplies user name, password, CONNECT user
// properties and WebSocket headers afresh before every connection attempt
// (short-lived tokens). Options.Proxy sends mqtt://, mqtts://, ws:// and
// wss:// through a SOCKS5 or HTTP CONNECT proxy (Options.ProxyFromEnvironment
// to follow ALL_PROXY and friends); the tunnel stays a socket, with the same
// readiness. Options.Authenticator carries out MQTT 5 enhanced
// authentication (package scram: SCRAM-SHA-256) and re-authentication on a
// Reauthenticate request. Options.OutgoingTopicAliases and
// Options.TopicAliasMaximum use MQTT 5 topic aliases in each direction,
// per connection.
//
// # MQTT over QUIC
//
// A quic:// connection outlives a change of network: when its path goes
// silent, a PINGREQ (or, with AckTimeout, a publish) goes unanswered, or
// Handover is called, the loop moves it to a new UDP socket and the
// session continues without CONNECT or replay (PathChanged); only if no
// new path works within QUICMigrationTimeout does it reconnect.
// QUICStreams spreads requests over data streams (EMQX's multi-stream
// mode) so that one large or lossy flow does not delay the others.
//
// # How a run ends
//
// Next returns a nil notification and an error wrapping one of
// ErrRequestsDone (the channel was closed and everything taken from it
// completed), ErrDisconnected (a Disconnect request), ErrStopped (a
// Shutdown request, the context ended, or Close), ErrConnectionLost (the
// connection failed and Options.Reconnect does not retry, or the broker
// refused for good; the cause is wrapped too) or ErrStore (the session
// store failed). After any of them State holds everything the next run
// needs, and Run may be called again. Cancelling the context, Close,
// Shutdown and Disconnect take effect within about 20 ms even while a
// write is blocked by a broker that stopped reading (TCP, TLS, WebSocket,
// Unix sockets and QUIC; see netio.WriteInterrupter), each with its own
// error.
//
// # Validation and poisoned messages
//
// Every field of a request and of Options is checked against the MQTT
// rules before it is accepted (eventloop/validate.go holds them in one
// place): strings are at most 65,535 bytes of UTF-8 without U+0000,
// control characters (U+0001-U+001F, U+007F-U+009F) or non-characters,
// which mosquitto refuses; binary data is at most 65,535 bytes; intervals
// are not negative and at most 2^32-1 s (a fraction of a second is
// rounded up); identifiers and reason codes are in their range; a
// Disconnect changes the session expiry only if CONNECT had one. A
// request that breaks a rule fails with RequestFailed wrapping
// ErrInvalidRequest and naming the field (New fails with
// ErrInvalidOptions); nothing is truncated or wrapped round.
//
// What validation cannot foresee (a broker plugin refusing a payload, a
// limit of its own) shows as a broker that ends the connection with a
// DISCONNECT blaming a packet whenever it reads a message. When the same
// QoS 1/2 publish is the first unacknowledged one at PoisonDrops (3) such
// DISCONNECTs in a row, it is removed from the session and reported as
// RequestFailed wrapping ErrPoisonMessage and the last cause; the
// publishes behind it go on. A connection merely closed or reset does not
// count: it cannot be told from a network cut.
//
// # Sessions and reconnecting
//
// The session (state.MqttState) holds publishes in flight with their
// stage, incoming QoS 2 ids, queued requests and subscriptions. When the
// broker kept the session, unacknowledged publishes are replayed with DUP
// and their original ids; when it lost it, they are sent again as new and
// subscriptions are re-established. Options.Reconnect chooses which
// failures are retried, with back-off (package reconnect); Options.Store
// makes the session durable across process restarts.
//
// # MQTT 3.1.1
//
// Options.ProtocolVersion 4 speaks MQTT 3.1.1 to brokers that speak
// nothing newer. Everything above the codec works the same. What MQTT 3.1.1
// cannot express is refused, never left out silently: New refuses, with
// ErrInvalidOptions wrapping ErrMQTT5Only, SessionExpiry, ReceiveMaximum,
// Will.Delay, Will.Properties, a Password without a Username, and an empty
// ClientID without CleanStart; requests that need MQTT 5 fail with
// RequestFailed (ErrInvalidRequest wrapping ErrMQTT5Only):
// Publish.Properties, Subscribe.SubscriptionID and UserProperties, the
// no-local, retain-as-published and retain-handling options of a Filter,
// Unsubscribe.UserProperties, an Ack or Disconnect with a reason code, and
// Disconnect.SessionExpiry.
//
// Sessions on 3.1.1: the Clean Session flag of every CONNECT is
// CleanStart. CleanStart true means a session that lasts as long as each
// connection (the loop then re-queues unacknowledged publishes and
// re-subscribes after a reconnect, as on MQTT 5 when the broker lost the
// session); CleanStart false, the default, means a persistent session that
// the broker keeps after a disconnect for as long as it is configured to
// (3.1.1 has no Session Expiry Interval; mosquitto's
// persistent_client_expiration, for example). Connected.SessionPresent is
// reported and handled exactly as on MQTT 5. The broker-side limits MQTT 5
// announces in CONNACK (Receive Maximum, Maximum Packet Size, Topic Alias
// Maximum, Maximum QoS, Retain Available) do not exist on 3.1.1 and stay
// at their defaults; MaxPacketSize is not announced but still enforced on
// incoming packets; MaxInflight defaults to 20. Unsubscribed.ReasonCodes
// holds one 0 (success) per topic, since a 3.1.1 UNSUBACK has none, and a
// refused CONNECT is reported with the MQTT 5 reason code of the same
// meaning (return code 1 as 0x84, 2 as 0x85, 3 as 0x88, 4 as 0x86, 5 as
// 0x87).
//
// # Goroutines
//
// Run and Next start no goroutine on any transport; tests prove it with
// goroutine profiles. Once SIGIO readiness is first used, the standard
// library runs two goroutines for the whole process, however many loops
// it runs: os/signal's dispatcher (os/signal.loop) and the runtime's
// ensureSigM (runtime.ensureSigM.func1), which keeps an OS thread of its
// own; a test measures this in a fresh process. With
// Options.WakeAfterSend (or a nil requests channel) a loop on a TCP or
// Unix socket waits in the runtime's poller and never uses SIGIO; it asks
// context.AfterFunc to cut that wait when the run's context ends, and the
// context package runs that function on a goroutine of its own then (it
// ends at once). Over quic:// the QUIC library runs its own goroutines
// per connection.
//
// # Waiting
//
// When nothing happened, the loop waits. By default it selects over the
// requests channel, the context, its timer and the connection's readiness
// (SIGIO through one process-wide epoll or kqueue set), and parks in the
// poller only for short slices while a reply or a stream is expected. A
// loop whose requests all come with a Wake (Options.WakeAfterSend, which
// package client sets) need not watch the channel: it parks in the
// runtime's poller as a reader goroutine would, which costs a third less
// CPU per message that arrives now and then (see the journal), and holds
// no buffer while idle.
package eventloop
