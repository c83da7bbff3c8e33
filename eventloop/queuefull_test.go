package eventloop_test

import (
	"context"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestQueueFullNotified: when MaxQueued requests wait (here: paused), the
// loop says so once with QueueFull and stops reading the channel; after
// EventLoop.Resume every request completes, none dropped.
func TestQueueFullNotified(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	const maxQueued, total = 3, 5
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: uniqueID("queue"), MaxQueued: maxQueued})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	reqs := make(chan eventloop.Request, total+1)
	reqs <- eventloop.Pause{}
	for i := range total {
		reqs <- eventloop.Publish{Topic: "queue/t", QoS: 1, Tag: i}
	}
	close(reqs)
	events := loop.Run(ctx, reqs)
	full, done := 0, map[any]bool{}
	for {
		n, err := events.Next()
		if err != nil {
			mustIs(t, err, eventloop.ErrRequestsDone)
			break
		}
		switch n := n.(type) {
		case eventloop.QueueFull:
			full++
			if n.Queued != maxQueued {
				t.Errorf("QueueFull with %d queued, want %d", n.Queued, maxQueued)
			}
			if s := loop.Status(); s.Queued != maxQueued || len(reqs) != total-maxQueued {
				t.Errorf("at QueueFull: status %d queued, %d left in the channel; want %d and %d", s.Queued, len(reqs), maxQueued, total-maxQueued)
			}
			loop.Resume() // from outside the channel, which is not read
		case eventloop.Published:
			if n.Err != nil {
				t.Fatal(n.Err)
			}
			done[n.Request.Tag] = true
		case eventloop.RequestFailed:
			t.Fatalf("request failed: %v", n.Err)
		}
	}
	if full != 1 || len(done) != total {
		t.Fatalf("%d QueueFull, %d of %d publishes done; want 1 and all", full, len(done), total)
	}
}
