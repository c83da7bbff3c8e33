package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// A request MQTT cannot carry fails on its own, naming the field, and the
// loop goes on; a publish the broker keeps closing the connection on would
// fail the same way with ErrPoisonMessage.
func Example_invalidRequest() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	loop, err := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}, ClientID: "validate-example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reqs := make(chan eventloop.Request, 2)
	reqs <- eventloop.Publish{Topic: "a/b", QoS: 1, Properties: &eventloop.Properties{ContentType: "text/plain\x00"}}
	reqs <- eventloop.Publish{Topic: "a/b", QoS: 1, Payload: []byte("fine")}
	close(reqs)
	for n, err := range loop.Run(ctx, reqs).All() {
		switch n := n.(type) {
		case eventloop.RequestFailed:
			switch {
			case errors.Is(n.Err, eventloop.ErrPoisonMessage):
				fmt.Println("the broker refuses this message:", n.Request)
			case errors.Is(n.Err, eventloop.ErrInvalidRequest):
				fmt.Println("invalid:", n.Err)
			}
		case eventloop.Published:
			fmt.Printf("published %s\n", n.Request.Payload)
		}
		if err != nil {
			fmt.Println("run ended:", errors.Is(err, eventloop.ErrRequestsDone))
		}
	}
	// Output:
	// invalid: mqttloop: invalid request: Publish.Properties.ContentType: contains U+0000 at offset 10: MQTT forbids U+0000
	// published fine
	// run ended: true
}
