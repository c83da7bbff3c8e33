package eventloop_test

import (
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// A server that cannot be reached is followed at once by the next one,
// even under reconnect.Never: this is what lets quic:// fall back to
// mqtts:// where UDP is blocked.
func TestFallbackToNextServer(t *testing.T) {
	b := mqtttest.StartT(t, mqtttest.Options{})
	dead := "mqtt://" + closedAddr(t)
	c := newClient(t, "", eventloop.Options{Servers: []string{dead, b.URL()}})
	conn := c.expectConnected()
	if conn.Server != b.URL() || conn.Transport != "tcp" {
		t.Fatalf("connected to %s over %s, want %s over tcp", conn.Server, conn.Transport, b.URL())
	}
}

// When every server fails, the run ends with each server's error.
func TestEveryServerFails(t *testing.T) {
	first, second := "mqtt://"+closedAddr(t), "mqtt://"+closedAddr(t)
	c := newClient(t, "", eventloop.Options{Servers: []string{first, second}})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, syscall.ECONNREFUSED)
	for _, s := range []string{first, second} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if !strings.Contains(err.Error(), "every server failed") {
		t.Errorf("error %q does not say that every server failed", err)
	}
}
