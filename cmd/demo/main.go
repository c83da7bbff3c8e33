// Command demo shows mqttloop at work: it connects, subscribes, publishes at
// QoS 0, 1 and 2, prints what arrives and exits when every message came
// back.
//
//	go run ./cmd/demo                          # against an embedded broker on loopback
//	go run ./cmd/demo -broker mqtt://host:1883 # against a real broker
//	go run ./cmd/demo -v                       # with a debug log of every packet
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testbroker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	broker := flag.String("broker", "", "broker URL (mqtt://host:port); empty starts an embedded broker on loopback")
	topic := flag.String("topic", fmt.Sprintf("mqttloop/demo/%d", os.Getpid()), "topic to publish to and subscribe on")
	count := flag.Int("count", 3, "messages to publish at each QoS")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	verbose := flag.Bool("v", false, "log every packet (debug)")
	protocol := flag.Int("protocol", 5, "MQTT version: 5 (MQTT 5) or 4 (MQTT 3.1.1)")
	flag.Parse()

	url := *broker
	if url == "" {
		b, err := testbroker.Start(testbroker.Options{DisableCapture: true})
		if err != nil {
			return fmt.Errorf("starting the embedded broker: %w", err)
		}
		defer b.Close()
		url = b.URL()
		fmt.Println("embedded broker listening at", url)
	}

	var logger *slog.Logger
	if *protocol != 4 && *protocol != 5 {
		return fmt.Errorf("-protocol %d: want 5 (MQTT 5) or 4 (MQTT 3.1.1)", *protocol)
	}
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	loop, err := eventloop.New(eventloop.Options{
		Servers:   []string{url},
		ClientID:  fmt.Sprintf("mqttloop-demo-%d", os.Getpid()),
		KeepAlive: 30 * time.Second,
		Logger:    logger,
		// CleanStart: the demo leaves no session behind on the broker
		// (on MQTT 3.1.1 the default, false, asks for a persistent one).
		CleanStart:      true,
		ProtocolVersion: byte(*protocol),
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	requests := make(chan eventloop.Request, 3*(*count)+1)
	requests <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: *topic + "/#", QoS: 2}}}

	want := 3 * *count
	received := 0
	events := loop.Run(ctx, requests)
	for {
		ev, err := events.Next()
		if err != nil {
			if errors.Is(err, eventloop.ErrRequestsDone) {
				fmt.Printf("done: %d messages published and received\n", want)
				return nil
			}
			return err
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			fmt.Printf("connected to %s over %s (session present: %v)\n", ev.Server, ev.Transport, ev.SessionPresent)
		case eventloop.Subscribed:
			if err := ev.Err(); err != nil {
				return err
			}
			fmt.Printf("subscribed to %s/# (granted QoS %v)\n", *topic, ev.ReasonCodes)
			for qos := byte(0); qos <= 2; qos++ {
				for i := 0; i < *count; i++ {
					requests <- eventloop.Publish{
						Topic:   fmt.Sprintf("%s/qos%d", *topic, qos),
						QoS:     qos,
						Payload: []byte(fmt.Sprintf("message %d at QoS %d", i+1, qos)),
					}
				}
			}
		case eventloop.Published:
			if ev.Err != nil {
				return ev.Err
			}
			fmt.Printf("  acknowledged by the broker: %s (QoS %d)\n", ev.Request.Topic, ev.Request.QoS)
		case eventloop.Message:
			received++
			fmt.Printf("received %s (QoS %d): %s\n", ev.Topic, ev.QoS, ev.Payload)
			if received == want {
				close(requests) // the run ends once every publish is acknowledged
			}
		case eventloop.RequestFailed:
			return ev.Err
		case eventloop.Disconnected:
			if !errors.Is(ev.Err, eventloop.ErrRequestsDone) {
				fmt.Println("disconnected:", ev.Err)
			}
		}
	}
}
