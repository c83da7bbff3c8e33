package eventloop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// Connected carries what the broker announced in its CONNACK: its limits,
// which features it supports, the keepalive it imposes, and, when asked
// for, the Response Information to build response topics on.
func ExampleConnected() {
	broker, _ := mqtttest.Start(mqtttest.Options{
		DisableCapture:        true,
		TopicAliasMaximum:     10,
		ServerKeepAlive:       30,
		NoSharedSubscriptions: true,
		ResponseInformation:   "responses/sensor-9",
		ConnackUserProperties: []mqtttest.UserProperty{{Key: "region", Value: "eu-1"}},
	})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{
		Servers:                    []string{broker.URL()},
		ClientID:                   "sensor-9",
		KeepAlive:                  time.Minute,
		RequestResponseInformation: true,
	})
	requests := make(chan eventloop.Request, 1)
	requests <- eventloop.Disconnect{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ev, err := range loop.Run(ctx, requests).All() {
		if err != nil {
			break
		}
		if c, ok := ev.(eventloop.Connected); ok {
			fmt.Println("keepalive:", c.KeepAlive, "set by the broker:", c.ServerKeepAlive)
			fmt.Println("topic aliases up to:", c.TopicAliasMaximum)
			fmt.Println("wildcards:", c.WildcardSubscriptionAvailable, "shared:", c.SharedSubscriptionAvailable,
				"subscription ids:", c.SubscriptionIdentifiersAvailable)
			fmt.Println("response information:", c.ResponseInformation)
			fmt.Println("user properties:", c.UserProperties)
		}
	}
	// Output:
	// keepalive: 30s set by the broker: true
	// topic aliases up to: 10
	// wildcards: true shared: false subscription ids: true
	// response information: responses/sensor-9
	// user properties: [{region eu-1}]
}
