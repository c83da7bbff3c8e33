package eventloop_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
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
