package eventloop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// Topic aliases save the topic on every repeated publish: with
// OutgoingTopicAliases the loop sends a topic once per connection and a
// two-byte alias after that (within the broker's Topic Alias Maximum);
// with TopicAliasMaximum the broker may do the same towards the client,
// and Message.Topic is resolved either way.
func ExampleOptions_topicAliases() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true, TopicAliasMaximum: 16})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{
		Servers:              []string{broker.URL()},
		ClientID:             "sensor-13",
		OutgoingTopicAliases: 16, // aliases for our publishes
		TopicAliasMaximum:    16, // aliases the broker may use towards us
	})
	topic := "plant/berlin/line-7/cell-3/spindle/temperature"
	requests := make(chan eventloop.Request, 4)
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: 1}}}
	for i := range 3 {
		requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(20 + i))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := 0
	for ev, err := range loop.Run(ctx, requests).All() {
		if err != nil {
			break
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			fmt.Println("broker accepts aliases up to", ev.TopicAliasMaximum)
		case eventloop.Message:
			fmt.Println(ev.Topic, string(ev.Payload))
			if received++; received == 3 {
				close(requests)
			}
		}
	}
	// Output:
	// broker accepts aliases up to 16
	// plant/berlin/line-7/cell-3/spindle/temperature 20
	// plant/berlin/line-7/cell-3/spindle/temperature 21
	// plant/berlin/line-7/cell-3/spindle/temperature 22
}
