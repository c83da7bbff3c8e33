package eventloop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testbroker"
)

// The whole client is a loop on your goroutine: requests go in through any
// channel, notifications come out of Next.
func Example() {
	broker, _ := testbroker.Start(testbroker.Options{DisableCapture: true}) // or your broker
	defer broker.Close()

	loop, err := eventloop.New(eventloop.Options{
		Servers:   []string{broker.URL()}, // e.g. "mqtt://127.0.0.1:1883"
		ClientID:  "sensor-7",
		KeepAlive: 30 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	requests := make(chan eventloop.Request, 8) // any channel you like
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "sensors/#", QoS: 1}}}
	requests <- eventloop.Publish{Topic: "sensors/7/temp", QoS: 1, Payload: []byte("21.5")}

	events := loop.Run(ctx, requests) // starts no goroutine
	for {
		ev, err := events.Next() // all protocol work happens in here
		if err != nil {
			fmt.Println("run ended:", err)
			break
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			fmt.Println("connected, session present:", ev.SessionPresent)
		case eventloop.Subscribed:
			fmt.Println("subscribed, granted QoS:", ev.ReasonCodes)
		case eventloop.Published:
			fmt.Println("broker acknowledged", ev.Request.Topic)
		case eventloop.Message:
			fmt.Printf("received %s: %s\n", ev.Topic, ev.Payload)
			close(requests) // no more requests: the run ends once all are done
		}
	}
	fmt.Println("in flight after the run:", loop.State().InFlight())
	// Unordered output:
	// connected, session present: false
	// subscribed, granted QoS: [1]
	// broker acknowledged sensors/7/temp
	// received sensors/7/temp: 21.5
	// run ended: mqttloop: requests channel closed and every request completed
	// in flight after the run: 0
}

// Events can also be ranged over; the last pair carries the error that
// ended the run.
func ExampleEvents_All() {
	broker, _ := testbroker.Start(testbroker.Options{DisableCapture: true})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}, ClientID: "batch-1"})
	requests := make(chan eventloop.Request, 3)
	for i := range 3 {
		requests <- eventloop.Publish{Topic: "jobs/done", QoS: 2, Payload: []byte{byte(i)}, Tag: i}
	}
	close(requests) // bounded work: the run ends when all three are acknowledged

	for ev, err := range loop.Run(context.Background(), requests).All() {
		if err != nil {
			fmt.Println("done:", err)
			break
		}
		if p, ok := ev.(eventloop.Published); ok {
			fmt.Println("acknowledged publish", p.Request.Tag)
		}
	}
	// Output:
	// acknowledged publish 0
	// acknowledged publish 1
	// acknowledged publish 2
	// done: mqttloop: requests channel closed and every request completed
}
