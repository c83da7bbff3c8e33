// Package client is the goroutine-friendly face of the event loop: the
// shape autopaho users know (Publish that returns when the broker
// acknowledged, Subscribe with a handler, Request for MQTT 5
// request/response), built on package eventloop and still starting no
// goroutine of its own.
//
//	c, err := client.New(client.Options{Loop: eventloop.Options{Servers: []string{"mqtt://127.0.0.1:1883"}}})
//	go c.Run(ctx) // the only goroutine: yours, where you want it
//	_, err = c.Subscribe(ctx, eventloop.Filter{Topic: "sensors/+/temp", QoS: 1}, func(ctx context.Context, m eventloop.Message) error {
//		return store(m) // nil: acknowledged; an error or a panic: not acknowledged
//	})
//	code, err := c.Publish(ctx, "sensors/1/temp", []byte("21.5"), client.PublishOptions{QoS: 1})
//
// # Goroutines
//
// Run drives the loop on the goroutine that calls it: all protocol work,
// and by default every handler, happens there. Publish, Subscribe,
// Unsubscribe and Request may be called from any goroutine, any number at
// once, while a run is in progress (or before it starts: they wait for
// it). They may also be called from a handler running on the Run
// goroutine: the call then drives the loop itself until its answer
// arrives or its context ends (eventloop's NextContext), and messages
// arriving meanwhile wait for the handler to return.
//
// # Handlers, order and acknowledgements
//
// Each message is routed by the subscriptions' topic filters (package
// topic: wildcards, shared subscriptions, overlapping filters). On MQTT 5,
// when the broker supports subscription identifiers, each subscription
// gets one and a message goes exactly to the subscriptions the broker says
// it matched; otherwise to every subscription whose filter matches it.
//
// By default handlers run on the Run goroutine, one at a time, in the
// order the messages arrived: in order per subscription (and overall). A
// slow handler slows reading from the broker, which is backpressure, not
// loss. For parallel handling set Options.Dispatch: it receives each
// handler call as a function to run on a goroutine of your choosing
// (a worker pool you run, one goroutine per subscription for per-filter
// order, ...); the library still starts none.
//
// A QoS 1 or 2 message is acknowledged when every handler it was routed to
// returned nil. A handler that returns an error or panics leaves it
// unacknowledged: the broker delivers it again after the next reconnect
// (MQTT forbids redelivery on the same connection). Options.HandlerError
// hears about such failures.
//
// # How waiting ends
//
// Every call that waits ends when its context ends (ctx.Err, wrapped) or
// when the run ends (ErrRunEnded wrapping the run's error), whichever
// comes first. A publish handed to the loop before that stays in the
// session: it is still sent (and, if the run ended, sent by the next run of
// the same Client), only nobody waits for its outcome.
package client
