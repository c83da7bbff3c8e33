package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// The whole client is a loop on your goroutine: requests go in through any
// channel, notifications come out of Next.
func Example() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true}) // or your broker
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
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
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

// MQTT over QUIC with a fallback to TLS over TCP: the loop tries the
// servers in order and moves on at once when one cannot be reached (UDP
// blocked), and Connected says which one it got. TLSConfig serves both;
// QUIC0RTT sends CONNECT in 0-RTT data on reconnections.
func Example_quicWithFallback() {
	certs := testcerts.Get() // a test CA; use your own, or nil for the system roots
	broker, _ := mqtttest.Start(mqtttest.Options{
		DisableCapture: true,
		QUIC:           true,
		TLS:            certs.ServerConfig(certs.Server, false),
	})
	defer broker.Close()

	loop, err := eventloop.New(eventloop.Options{
		Servers: []string{
			broker.QUICURL(), // e.g. "quic://broker.example:14567"
			broker.TLSURL(),  // e.g. "mqtts://broker.example:8883"
		},
		ClientID:  "sensor-8",
		TLSConfig: certs.ClientConfig(), // RootCAs with the broker's CA; add Certificates for mTLS
		QUIC0RTT:  true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	requests := make(chan eventloop.Request, 1)
	requests <- eventloop.Disconnect{}

	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			fmt.Println("run ended:", errors.Is(err, eventloop.ErrDisconnected))
			return
		}
		if c, ok := ev.(eventloop.Connected); ok {
			fmt.Println("connected over", c.Transport)
		}
	}
	// Output:
	// connected over quic
	// run ended: true
}

// Over QUIC, QUICStreams puts traffic on streams of its own, so that a
// large or lossy flow does not hold up the rest, and Handover moves the
// connection to a new network path (after a change of Wi-Fi, say) with
// the MQTT session untouched. The loop also moves by itself when the path
// goes silent; PathChanged reports both.
func Example_quicStreamsAndHandover() {
	certs := testcerts.Get()
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true, QUIC: true})
	defer broker.Close()

	loop, err := eventloop.New(eventloop.Options{
		Servers:   []string{broker.QUICURL()},
		ClientID:  "camera-3",
		TLSConfig: certs.ClientConfig(),
		// Video frames on data stream 1, everything else on 2.
		QUICStreams: func(r eventloop.Request) int {
			if p, ok := r.(eventloop.Publish); ok && strings.HasPrefix(p.Topic, "video/") {
				return 1
			}
			return 2
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	requests := make(chan eventloop.Request, 2)
	requests <- eventloop.Publish{Topic: "video/3", QoS: 1, Payload: make([]byte, 64<<10)}

	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			fmt.Println("run ended:", errors.Is(err, eventloop.ErrDisconnected))
			return
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			fmt.Println("connected over", ev.Transport)
		case eventloop.Published:
			fmt.Println("published", ev.Request.Topic)
			loop.Handover() // say the application learned that the network changed
		case eventloop.PathChanged:
			// The loop also moves by itself when the path goes silent.
			if ev.Trigger == eventloop.PathHandover {
				fmt.Println("moved to a new path:", ev.Trigger)
				requests <- eventloop.Disconnect{}
			}
		}
	}
	// Output:
	// connected over quic
	// published video/3
	// moved to a new path: handover
	// run ended: true
}
