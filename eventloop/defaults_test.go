package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestDefaultReconnect: with Options left at their defaults a lost
// connection is survived (reconnect.AfterFirstSuccess), while a first
// connection that fails ends the run at once.
func TestDefaultReconnect(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("defaults")
	loop, err := eventloop.New(eventloop.Options{Servers: []string{b.URL()}, ClientID: id})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	events := loop.Run(ctx, nil)
	next := func() eventloop.Notification {
		t.Helper()
		n, err := events.Next()
		if err != nil {
			t.Fatalf("run ended: %v", err)
		}
		return n
	}
	if _, ok := next().(eventloop.Connected); !ok {
		t.Fatal("not connected first")
	}
	if err := b.DisconnectClient(id, 0x8B); err != nil {
		t.Fatal(err)
	}
	if d, ok := next().(eventloop.Disconnected); !ok || !errors.Is(d.Err, eventloop.ErrBrokerDisconnect) {
		t.Fatalf("want Disconnected by the broker, got %#v", d)
	}
	if _, ok := next().(eventloop.Reconnecting); !ok {
		t.Fatal("no Reconnecting after the loss")
	}
	if _, ok := next().(eventloop.Connected); !ok {
		t.Fatal("not connected again")
	}
	if s := loop.Status(); s.Connections != 2 {
		t.Fatalf("status: %+v", s)
	}

	// A first attempt that fails ends the run.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	loop2, err := eventloop.New(eventloop.Options{Servers: []string{"mqtt://" + addr}})
	if err != nil {
		t.Fatal(err)
	}
	events2 := loop2.Run(ctx, nil)
	for {
		_, err := events2.Next()
		if err != nil {
			mustIs(t, err, eventloop.ErrConnectionLost)
			break
		}
	}
}

// TestDefaultsSurviveBrokerRestart is the sensor: one goroutine
// publishes a QoS 1 reading every 10 ms with NextContext, options left at
// their defaults but the client id, through a restart of mosquitto (which
// loses every session). Every reading ends in exactly one Published
// without error, and the loop says it reconnected.
func TestDefaultsSurviveBrokerRestart(t *testing.T) {
	requireMosquitto(t)
	m := mosquitto.Start(t, mosquitto.Options{})
	loop, err := eventloop.New(eventloop.Options{Servers: []string{m.URL()}, ClientID: uniqueID("sensor")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	reqs := make(chan eventloop.Request, 64)
	events := loop.Run(ctx, reqs)
	const total, restartAt = 60, 20
	const period = 10 * time.Millisecond
	acked := map[int]int{}
	sent, restarted, reconnecting := 0, false, 0
	due := time.Now()
	for len(acked) < total {
		if sent < total && !time.Now().Before(due) {
			sent++
			reqs <- eventloop.Publish{Topic: "sensors/restart", QoS: 1, Payload: []byte(fmt.Sprint(sent)), Tag: sent}
			due = due.Add(period)
		}
		if !restarted && len(acked) == restartAt {
			m.Restart()
			restarted = true
		}
		wait, cancel := ctx, context.CancelFunc(func() {})
		if sent < total { // a reading to come: wait until it is due
			wait, cancel = context.WithDeadline(ctx, due)
		}
		n, err := events.NextContext(wait)
		cancel()
		switch {
		case errors.Is(err, eventloop.ErrWaitEnded):
			if ctx.Err() != nil {
				t.Fatalf("%d of %d acknowledged when the test timed out", len(acked), total)
			}
			continue
		case err != nil:
			t.Fatalf("run ended: %v", err)
		}
		switch n := n.(type) {
		case eventloop.Published:
			if n.Err != nil {
				t.Fatalf("reading %v: %v", n.Request.Tag, n.Err)
			}
			acked[n.Request.Tag.(int)]++
		case eventloop.Reconnecting:
			reconnecting++
		case eventloop.RequestFailed:
			t.Fatalf("request failed: %v", n.Err)
		}
	}
	for tag, k := range acked {
		if k != 1 || tag < 1 || tag > total {
			t.Fatalf("reading %d acknowledged %d times", tag, k)
		}
	}
	if s := loop.Status(); reconnecting == 0 || s.Connections < 2 || s.MessagesOut < total {
		t.Fatalf("after the restart: %d Reconnecting, status %+v", reconnecting, s)
	}
	loop.Close()
	for {
		if _, err := events.Next(); err != nil {
			break
		}
	}
}
