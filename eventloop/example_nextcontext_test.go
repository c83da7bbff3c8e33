package eventloop_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// MQTT 5 request/response with a timeout, on the one goroutine that drives
// the loop: NextContext ends the wait for a reply at the deadline without
// ending the run. (Here the same loop also serves "rpc/double", so the
// example needs no second program.)
func ExampleEvents_NextContext() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}, ClientID: "rpc-client"})
	// Requests are sent from the goroutine calling Next: the channel must
	// have room for what one notification can cause (here one reply).
	requests := make(chan eventloop.Request, 16)
	events := loop.Run(context.Background(), requests)
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "rpc/double", QoS: 1}, {Topic: "replies/rpc-client", QoS: 1}}}

	// serve handles the notifications that are not the awaited reply.
	serve := func(ev eventloop.Notification) {
		if m, ok := ev.(eventloop.Message); ok && m.Topic == "rpc/double" && m.Properties != nil {
			n, _ := strconv.Atoi(string(m.Payload))
			requests <- eventloop.Publish{Topic: m.Properties.ResponseTopic, QoS: 1, Payload: []byte(strconv.Itoa(2 * n)),
				Properties: &eventloop.Properties{CorrelationData: m.Properties.CorrelationData}}
		}
	}
	seq := 0
	call := func(topic, payload string, timeout time.Duration) (string, error) {
		seq++
		corr := []byte(strconv.Itoa(seq))
		requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(payload),
			Properties: &eventloop.Properties{ResponseTopic: "replies/rpc-client", CorrelationData: corr}}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		for {
			ev, err := events.NextContext(ctx)
			if err != nil && !errors.Is(err, eventloop.ErrWaitEnded) {
				return "", err // the run ended
			}
			if m, ok := ev.(eventloop.Message); ok && m.Topic == "replies/rpc-client" && m.Properties != nil && bytes.Equal(m.Properties.CorrelationData, corr) {
				return string(m.Payload), nil
			}
			serve(ev)
			// ErrWaitEnded, or a steady stream of other notifications
			// (they come first) past the deadline.
			if ctx.Err() != nil {
				return "", fmt.Errorf("%s: no reply within %v", topic, timeout)
			}
		}
	}

	// Wait (without a deadline) until subscribed.
	for ev, err := range events.All() {
		if err != nil {
			fmt.Println(err)
			return
		}
		if _, ok := ev.(eventloop.Subscribed); ok {
			break
		}
	}
	if _, err := call("rpc/nobody", "1", 200*time.Millisecond); err != nil {
		fmt.Println(err) // nobody serves it
	}
	reply, err := call("rpc/double", "21", 5*time.Second) // the run went on
	fmt.Println(reply, err)
	loop.Close()
	// Output:
	// rpc/nobody: no reply within 200ms
	// 42 <nil>
}

// Periodic work on the goroutine that drives the loop: a reading every
// 50 ms, waiting for notifications in between.
func ExampleEvents_NextContext_periodic() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}, ClientID: "sensor-9"})
	requests := make(chan eventloop.Request, 8)
	events := loop.Run(context.Background(), requests)

	const period = 50 * time.Millisecond
	due := time.Now()
	sent, acked := 0, 0
	for acked < 3 {
		if sent < 3 && !time.Now().Before(due) {
			sent++
			requests <- eventloop.Publish{Topic: "sensors/9/temp", QoS: 1, Payload: []byte(fmt.Sprint(20 + sent)), Tag: sent}
			due = due.Add(period)
		}
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if sent < 3 { // a reading to come: wait until it is due
			ctx, cancel = context.WithDeadline(ctx, due)
		}
		ev, err := events.NextContext(ctx)
		cancel()
		switch {
		case errors.Is(err, eventloop.ErrWaitEnded):
			continue // time for the next reading
		case err != nil:
			fmt.Println("run ended:", err)
			return
		}
		if p, ok := ev.(eventloop.Published); ok {
			acked++
			fmt.Println("reading", p.Request.Tag, "acknowledged")
		}
	}
	loop.Close()
	// Output:
	// reading 1 acknowledged
	// reading 2 acknowledged
	// reading 3 acknowledged
}
