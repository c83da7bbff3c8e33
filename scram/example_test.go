package scram_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/scram"
)

// MQTT 5 enhanced authentication with SCRAM-SHA-256: the password never
// crosses the wire and the broker proves it knows it too. Reauthenticate
// runs the exchange again on the live connection.
func ExampleSHA256() {
	broker, _ := mqtttest.Start(mqtttest.Options{
		DisableCapture: true,
		EnhancedAuth:   mqtttest.SCRAMSHA256(map[string]string{"sensor-12": "s3cret"}),
	})
	defer broker.Close()

	auth, err := scram.SHA256("sensor-12", "s3cret")
	if err != nil {
		fmt.Println(err)
		return
	}
	loop, _ := eventloop.New(eventloop.Options{
		Servers:       []string{broker.URL()},
		ClientID:      "sensor-12",
		Authenticator: auth,
	})
	requests := make(chan eventloop.Request, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ev, err := range loop.Run(ctx, requests).All() {
		if err != nil {
			fmt.Println("run ended:", err)
			break
		}
		switch ev.(type) {
		case eventloop.Connected:
			fmt.Println("authenticated with", auth.Method())
			requests <- eventloop.Reauthenticate{} // e.g. before a credential expires
		case eventloop.Reauthenticated:
			fmt.Println("re-authenticated")
			requests <- eventloop.Disconnect{}
		}
	}
	// Output:
	// authenticated with SCRAM-SHA-256
	// re-authenticated
	// run ended: mqttloop: disconnected on request
}
