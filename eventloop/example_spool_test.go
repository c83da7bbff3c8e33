package eventloop_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// With a Store and SpoolBytes, a publisher that cannot reach its broker
// keeps taking requests: beyond MaxQueued they spill to the store (the
// offline spool), memory stays bounded, and the backlog survives the
// process. Here the first run never connects and stops; the second, on
// the same store, sends the backlog in order.
func ExampleOptions_spoolBytes() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "session.db")
	broker, _ := mqtttest.Start(mqtttest.Options{DisableCapture: true})
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	run := func(server string, requests chan eventloop.Request) (*eventloop.EventLoop, map[string]int) {
		store, _ := filestore.Open(path, filestore.Options{})
		defer store.Close()
		loop, err := eventloop.New(eventloop.Options{
			Servers:     []string{server},
			ClientID:    "meter-17",
			SessionName: "plant-broker", // the store continues under other addresses
			Reconnect:   reconnect.Automatic,
			BackOff:     &backoff.ConstantBackOff{Interval: 50 * time.Millisecond},
			Store:       store,
			MaxQueued:   64,      // in memory
			SpoolBytes:  1 << 30, // on disk, beyond MaxQueued
		})
		if err != nil {
			panic(err)
		}
		seen := map[string]int{}
		for ev, err := range loop.Run(ctx, requests).All() {
			if err != nil {
				break
			}
			switch ev.(type) {
			case eventloop.Published:
				seen["published"]++
			case eventloop.Dropped:
				seen["dropped"]++
			}
		}
		return loop, seen
	}

	// Offline: nothing listens on port 1.
	requests := make(chan eventloop.Request, 1001)
	for i := range 1000 {
		requests <- eventloop.Publish{Topic: "meters/17", QoS: 1, Payload: []byte(strconv.Itoa(i))}
	}
	requests <- eventloop.Shutdown{}
	loop, _ := run("mqtt://127.0.0.1:1", requests)
	spooled, _ := loop.State().Spooled()
	fmt.Println("queued:", loop.State().Queued(), "of which in the store only:", spooled)

	// Online, from the store.
	done := make(chan eventloop.Request)
	close(done) // no new requests: the run ends once the backlog is sent
	_, seen := run(broker.URL(), done)
	fmt.Println("published:", seen["published"], "dropped:", seen["dropped"])
	// Output:
	// queued: 1000 of which in the store only: 936
	// published: 1000 dropped: 0
}
