package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttloop/mqttloop/client"
	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// Concurrent publishers that each need their publish's outcome: Publish
// returns when the broker acknowledged. The client's only goroutine is
// the one you run it on.
func Example_concurrentPublishers() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true}) // or your broker
	defer broker.Close()

	c, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "publishers"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)

	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				_, err := c.Publish(ctx, fmt.Sprintf("orders/%d", w), fmt.Appendf(nil, "order %d", i), client.PublishOptions{QoS: 1})
				if err != nil {
					fmt.Println("not published:", err) // refused, or the run ended
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("acknowledged:", acked.Load())
	// Output: acknowledged: 200
}

// A service with a handler per topic filter. A message is acknowledged
// when its handlers return nil; an error leaves it unacknowledged, for
// the broker to deliver again after a reconnect. Overlapping filters each
// get the message once.
func Example_router() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	c, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "orders-service"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)

	var created, all atomic.Int64
	done := make(chan struct{})
	c.Subscribe(ctx, eventloop.Filter{Topic: "orders/+/created", QoS: 1}, func(_ context.Context, m eventloop.Message) error {
		created.Add(1)
		return nil // acknowledged
	})
	c.Subscribe(ctx, eventloop.Filter{Topic: "orders/#", QoS: 1}, func(_ context.Context, m eventloop.Message) error {
		if all.Add(1) == 300 {
			close(done)
		}
		return nil
	})

	pub, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "orders-source"}})
	go pub.Run(ctx)
	for i := range 300 {
		kind := []string{"created", "paid", "shipped"}[i%3]
		pub.Publish(ctx, "orders/eu/"+kind, nil, client.PublishOptions{QoS: 1})
	}
	<-done
	fmt.Println("orders/#:", all.Load(), "orders/+/created:", created.Load())
	// Output: orders/#: 300 orders/+/created: 100
}

// MQTT 5 request/response with a deadline: the client subscribes to its
// response topic, sends the request with correlation data and waits for
// the matching response. A response after the deadline is dropped.
func ExampleClient_Request() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The service: answers requests on svc/time.
	svc, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "time-service"}})
	go svc.Run(ctx)
	svc.Subscribe(ctx, eventloop.Filter{Topic: "svc/time", QoS: 1}, func(hctx context.Context, m eventloop.Message) error {
		_, err := svc.Respond(hctx, m, []byte("12:00"), client.PublishOptions{QoS: 1})
		return err
	})

	// The caller.
	c, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "caller"}})
	go c.Run(ctx)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	resp, err := c.Request(rctx, "svc/time", []byte("now?"))
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Println("no answer in time")
		return
	}
	fmt.Printf("answer: %s\n", resp.Payload)
	// Output: answer: 12:00
}

// A sensor publishing every 100 ms (here 5 readings), through broker
// restarts (it reconnects after its first success and keeps its session on
// the broker for an hour) and through its own restarts (the session, with
// any reading not yet acknowledged, is in a file that the next start
// continues).
func Example_sensor() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	dir, _ := os.MkdirTemp("", "sensor")
	defer os.RemoveAll(dir)

	store, err := filestore.Open(filepath.Join(dir, "session"), filestore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	c, err := client.New(client.Options{Loop: eventloop.Options{
		Servers:       []string{broker.URL()},
		ClientID:      "sensor-7",
		SessionExpiry: time.Hour,
		Reconnect:     reconnect.AfterFirstSuccess,
		Store:         store,
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- c.Run(ctx) }()
	defer func() { cancel(); <-ran }() // the run has saved the session before the store closes

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := range 5 {
		<-tick.C
		if _, err := c.Publish(ctx, "sensors/7/temp", fmt.Appendf(nil, "%.1f", 20+float64(i)/10), client.PublishOptions{QoS: 1}); err != nil {
			fmt.Println("reading not acknowledged yet:", err) // it stays in the session
		}
	}
	fmt.Println("5 readings acknowledged")
	// Output: 5 readings acknowledged
}

// A bounded job: publish 1,000 messages and exit when all are
// acknowledged, or after 10 seconds with the count of those that were.
func Example_boundedJob() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()

	c, _ := client.New(client.Options{Loop: eventloop.Options{Servers: []string{broker.URL()}, ClientID: "export-job"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go c.Run(ctx)

	var acked atomic.Int64
	var wg sync.WaitGroup
	for w := range 10 { // 10 publishes in flight at a time
		wg.Go(func() {
			for i := w; i < 1000; i += 10 {
				if _, err := c.Publish(ctx, "export/rows", fmt.Appendf(nil, "row %d", i), client.PublishOptions{QoS: 1}); err != nil {
					return // the deadline passed
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println("acknowledged:", acked.Load(), "of 1000")
	// Output: acknowledged: 1000 of 1000
}

// Handlers in parallel: Options.Dispatch hands each handler call to
// goroutines you run (here one worker per filter, which keeps each filter
// in order). A handler's message is acknowledged from the worker when it
// returns; the Run goroutine goes on meanwhile, and waits in Dispatch when
// the worker is busy (backpressure).
func ExampleOptions_dispatch() {
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	workers := map[string]chan func(){"images/#": make(chan func()), "thumbnails/#": make(chan func())}
	for _, tasks := range workers {
		go func() {
			for task := range tasks {
				task()
			}
		}()
	}
	c, _ := client.New(client.Options{
		Loop:     eventloop.Options{Servers: []string{broker.URL()}, ClientID: "resizer"},
		Dispatch: func(filter string, task func()) { workers[filter] <- task },
	})
	go c.Run(ctx)

	var resized, thumbs atomic.Int64
	var wg sync.WaitGroup
	wg.Add(20)
	c.Subscribe(ctx, eventloop.Filter{Topic: "images/#", QoS: 1}, func(_ context.Context, m eventloop.Message) error {
		resized.Add(1) // slow work here
		wg.Done()
		return nil
	})
	c.Subscribe(ctx, eventloop.Filter{Topic: "thumbnails/#", QoS: 1}, func(_ context.Context, m eventloop.Message) error {
		thumbs.Add(1)
		wg.Done()
		return nil
	})
	for i := range 10 {
		c.Publish(ctx, fmt.Sprintf("images/%d", i), nil, client.PublishOptions{QoS: 1})
		c.Publish(ctx, fmt.Sprintf("thumbnails/%d", i), nil, client.PublishOptions{QoS: 1})
	}
	wg.Wait()
	fmt.Println("resized:", resized.Load(), "thumbnails:", thumbs.Load())
	// Output: resized: 10 thumbnails: 10
}
