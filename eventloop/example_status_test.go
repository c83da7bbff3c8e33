package eventloop_test

import (
	"context"
	"expvar"
	"fmt"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// Status can be read from any goroutine during a run, so exporting it is a
// few lines: here as an expvar variable (in a program, expvar.Publish("mqtt",
// vars) serves it at /debug/vars); a Prometheus collector would read the
// same fields.
func ExampleEventLoop_Status() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	loop, _ := eventloop.New(eventloop.Options{Servers: []string{broker.URL()}, ClientID: "gateway-3"})
	vars := expvar.Func(func() any {
		s := loop.Status()
		lastErr := ""
		if s.LastError != nil {
			lastErr = s.LastError.Error()
		}
		return map[string]any{
			"connected":    s.Connected,
			"connections":  s.Connections,
			"in_flight":    s.InFlight,
			"queued":       s.Queued,
			"messages_in":  s.MessagesIn,
			"messages_out": s.MessagesOut,
			"last_error":   lastErr,
			// also s.BytesIn, s.BytesOut, s.Server, s.Transport, s.ConnectedSince
		}
	})

	requests := make(chan eventloop.Request, 3)
	for i := range 3 {
		requests <- eventloop.Publish{Topic: "telemetry/3", QoS: 1, Payload: []byte{byte(i)}}
	}
	close(requests)
	for _, err := range loop.Run(context.Background(), requests).All() {
		if err != nil {
			break
		}
	}
	fmt.Println(vars.String())
	// Output:
	// {"connected":false,"connections":1,"in_flight":0,"last_error":"mqttloop: requests channel closed and every request completed","messages_in":0,"messages_out":3,"queued":0}
}
