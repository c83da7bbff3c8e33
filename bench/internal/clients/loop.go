package clients

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

type loopSub struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newLoop(url, id string, inflight int, wakeAfterSend bool) (*eventloop.EventLoop, error) {
	return eventloop.New(eventloop.Options{
		Servers:       []string{url},
		ClientID:      id,
		CleanStart:    true,
		KeepAlive:     KeepAlive,
		MaxInflight:   inflight,
		WakeAfterSend: wakeAfterSend,
	})
}

// loopSubscribe runs the loop on a goroutine of the benchmark's (the
// caller's goroutine, as an application would). wakeAfterSend sets the
// option of that name: the one request is sent before Run, so the promise
// holds.
func loopSubscribe(url, id, topic string, qos byte, wakeAfterSend bool, onMsg func()) (Subscriber, error) {
	loop, err := newLoop(url, id, 0, wakeAfterSend)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	reqs := make(chan eventloop.Request, 1)
	reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: qos}}}
	events := loop.Run(ctx, reqs)
	for {
		n, err := events.Next()
		if err != nil {
			cancel()
			return nil, fmt.Errorf("mqttloop: %w", err)
		}
		if s, ok := n.(eventloop.Subscribed); ok {
			if err := s.Err(); err != nil {
				cancel()
				return nil, err
			}
			break
		}
	}
	s := &loopSub{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			n, err := events.Next()
			if err != nil {
				return
			}
			if _, ok := n.(eventloop.Message); ok {
				onMsg()
			}
		}
	}()
	return s, nil
}

func (s *loopSub) Close() {
	s.cancel()
	<-s.done
}

func loopPublish(url, id, topic string, payload []byte, qos byte, n, inflight int) error {
	loop, err := newLoop(url, id, inflight, false)
	if err != nil {
		return err
	}
	reqs := make(chan eventloop.Request, 1024)
	events := loop.Run(context.Background(), reqs)
	first, err := events.Next()
	if err != nil {
		return err
	}
	if _, ok := first.(eventloop.Connected); !ok {
		return fmt.Errorf("mqttloop: first notification %T", first)
	}
	req := eventloop.Publish{Topic: topic, Payload: payload, QoS: qos}
	go func() {
		defer close(reqs)
		for range n {
			reqs <- req
		}
	}()
	done := 0
	for {
		ev, err := events.Next()
		if err != nil {
			if !errors.Is(err, eventloop.ErrRequestsDone) {
				return err
			}
			break
		}
		if p, ok := ev.(eventloop.Published); ok {
			if p.Err != nil {
				return p.Err
			}
			done++
		}
	}
	if qos > 0 && done != n {
		return fmt.Errorf("mqttloop: %d of %d publishes completed", done, n)
	}
	return nil
}

func loopRoundTrips(url, id, topic string, payload []byte, n int) ([]time.Duration, error) {
	loop, err := newLoop(url, id, 0, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reqs := make(chan eventloop.Request, 1)
	events := loop.Run(ctx, reqs)
	if _, err := events.Next(); err != nil {
		return nil, err
	}
	req := eventloop.Publish{Topic: topic, Payload: payload, QoS: 1}
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		reqs <- req
		for {
			ev, err := events.Next()
			if err != nil {
				return nil, err
			}
			if p, ok := ev.(eventloop.Published); ok {
				if p.Err != nil {
					return nil, p.Err
				}
				break
			}
		}
		rtts = append(rtts, time.Since(t0))
	}
	reqs <- eventloop.Disconnect{}
	for {
		if _, err := events.Next(); err != nil {
			break
		}
	}
	return rtts, nil
}
