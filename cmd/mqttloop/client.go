package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

// client runs a loop on a goroutine of its own and hands its notifications
// over a channel, for commands (check) that drive a conversation step by
// step.
type client struct {
	loop     *eventloop.EventLoop
	requests chan eventloop.Request
	events   chan eventloop.Notification
	end      error // set before events is closed
	cancel   context.CancelFunc
	done     chan struct{}
}

// dial connects with opts and returns once Connected arrived (with the time
// it took), or the run ended.
func dial(ctx context.Context, opts eventloop.Options) (*client, eventloop.Connected, time.Duration, error) {
	loop, err := eventloop.New(opts)
	if err != nil {
		return nil, eventloop.Connected{}, 0, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &client{loop: loop, requests: make(chan eventloop.Request, 16), events: make(chan eventloop.Notification, 64),
		cancel: cancel, done: make(chan struct{})}
	began := time.Now()
	go func() {
		defer close(c.done)
		events := loop.Run(runCtx, c.requests)
		for {
			n, err := events.Next()
			if err != nil {
				c.end = err
				close(c.events)
				return
			}
			c.events <- n
		}
	}()
	n, err := c.wait(ctx, func(n eventloop.Notification) bool { _, ok := n.(eventloop.Connected); return ok })
	if err != nil {
		c.close()
		return nil, eventloop.Connected{}, 0, err
	}
	return c, n.(eventloop.Connected), time.Since(began), nil
}

// errEnded: the run ended while a notification was awaited.
var errEnded = errors.New("the connection ended")

// wait returns the first notification for which match is true. Others are
// dropped. A RequestFailed is returned as an error.
func (c *client) wait(ctx context.Context, match func(eventloop.Notification) bool) (eventloop.Notification, error) {
	for {
		select {
		case n, ok := <-c.events:
			if !ok {
				return nil, fmt.Errorf("%w: %w", errEnded, c.end)
			}
			if rf, ok := n.(eventloop.RequestFailed); ok {
				return nil, rf.Err
			}
			if match(n) {
				return n, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// message waits for a message on topic.
func (c *client) message(ctx context.Context, topic string) (eventloop.Message, error) {
	n, err := c.wait(ctx, func(n eventloop.Notification) bool { m, ok := n.(eventloop.Message); return ok && m.Topic == topic })
	if err != nil {
		return eventloop.Message{}, err
	}
	return n.(eventloop.Message), nil
}

// subscribe subscribes and waits for the SUBACK; a refusal is an error.
func (c *client) subscribe(ctx context.Context, s eventloop.Subscribe) error {
	c.requests <- s
	n, err := c.wait(ctx, func(n eventloop.Notification) bool { _, ok := n.(eventloop.Subscribed); return ok })
	if err != nil {
		return err
	}
	return n.(eventloop.Subscribed).Err()
}

// publish publishes; at QoS 1 and 2 it waits for the acknowledgement.
func (c *client) publish(ctx context.Context, p eventloop.Publish) error {
	c.requests <- p
	if p.QoS == 0 {
		return nil
	}
	n, err := c.wait(ctx, func(n eventloop.Notification) bool { _, ok := n.(eventloop.Published); return ok })
	if err != nil {
		return err
	}
	return n.(eventloop.Published).Err
}

// disconnect sends Disconnect with reason and waits for the run to end.
func (c *client) disconnect(reason byte) {
	select {
	case c.requests <- eventloop.Disconnect{ReasonCode: reason}:
	default:
	}
	t := time.AfterFunc(5*time.Second, c.cancel)
	defer t.Stop()
	c.drain()
}

// close ends the run at once.
func (c *client) close() {
	c.cancel()
	c.drain()
}

func (c *client) drain() {
	for range c.events {
	}
	<-c.done
	c.cancel()
}
