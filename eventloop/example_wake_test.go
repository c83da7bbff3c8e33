package eventloop_test

import (
	"context"
	"fmt"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// A subscriber that mostly receives waits cheapest in the runtime's
// poller. Options.WakeAfterSend allows it: requests sent between two
// calls of Next (here the Subscribe, before Run) need nothing, and the
// goroutine that publishes now and then calls Wake after each send.
func ExampleOptions_wakeAfterSend() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{
		Servers:       []string{broker.URL()},
		ClientID:      "meter-7",
		WakeAfterSend: true,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	requests := make(chan eventloop.Request, 8) // buffered: a send never waits for the loop
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "meters/7/set", QoS: 1}}}
	events := loop.Run(ctx, requests)

	for n, err := range events.All() {
		if err != nil {
			break
		}
		switch n := n.(type) {
		case eventloop.Subscribed:
			go func() { // another goroutine: it sends, then wakes the loop
				requests <- eventloop.Publish{Topic: "meters/7/set", QoS: 1, Payload: []byte("on")}
				loop.Wake()
			}()
		case eventloop.Message:
			fmt.Printf("%s: %s\n", n.Topic, n.Payload)
			cancel()
		}
	}
	// Output:
	// meters/7/set: on
}
