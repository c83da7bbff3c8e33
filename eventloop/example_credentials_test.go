package eventloop_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// Brokers that take short-lived tokens as passwords (JWT, SAS) need them
// signed when the connection is made: Options.Credentials is called before
// every CONNECT, with the connect deadline in its context. An error is
// reported and retried like a failed dial.
func ExampleCredentials() {
	broker, _ := mqtttest.Start(mqtttest.Options{
		DisableCapture: true,
		Authenticate: func(c mqtttest.ConnectInfo) bool {
			return strings.HasPrefix(string(c.Password), "signed-") // your broker checks the signature
		},
	})
	defer broker.Close()

	signToken := func(ctx context.Context, device string) (string, error) {
		// e.g. sign a JWT valid for one hour, or ask a token service (with ctx)
		return "signed-" + device, nil
	}
	loop, _ := eventloop.New(eventloop.Options{
		Servers:  []string{broker.URL()},
		ClientID: "sensor-10",
		Credentials: func(ctx context.Context, server string) (eventloop.Credentials, error) {
			token, err := signToken(ctx, "sensor-10")
			if err != nil {
				return eventloop.Credentials{}, err
			}
			return eventloop.Credentials{Username: "sensor-10", Password: []byte(token)}, nil
		},
	})
	requests := make(chan eventloop.Request, 1)
	requests <- eventloop.Disconnect{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ev, err := range loop.Run(ctx, requests).All() {
		if err != nil {
			fmt.Println("run ended:", err)
			break
		}
		if _, ok := ev.(eventloop.Connected); ok {
			fmt.Println("connected with a fresh token")
		}
	}
	// Output:
	// connected with a fresh token
	// run ended: mqttloop: disconnected on request
}
