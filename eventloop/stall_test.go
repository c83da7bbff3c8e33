package eventloop_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
)

// stopCases are the ways a run can be ended from outside while the
// loop's write is blocked, each with the error the run must end with (and
// a second one it must also match, when there is one).
var stopCases = []struct {
	name string
	stop func(c *client)
	want error
	also error
}{
	{"context cancelled", func(c *client) { c.cancel() }, eventloop.ErrStopped, context.Canceled},
	{"Close", func(c *client) { c.loop.Close() }, eventloop.ErrStopped, nil},
	{"Shutdown", func(c *client) { c.reqs <- eventloop.Shutdown{}; c.woke() }, eventloop.ErrStopped, nil},
	{"Disconnect", func(c *client) { c.reqs <- eventloop.Disconnect{}; c.woke() }, eventloop.ErrDisconnected, nil},
}

// TestBrokerStopsReading: a broker that stops reading blocks the loop's
// write. Cancelling the context, Close, Shutdown and Disconnect must
// still end the run at once, each with its own error, and leave every
// publish in the session. WriteTimeout is 10 minutes: without the fix
// the run would end only then, so the test fails on its own timeout. The
// broker never reads again before the run has ended.
func TestBrokerStopsReading(t *testing.T) {
	for _, tc := range stopCases {
		t.Run(tc.name, func(t *testing.T) {
			srv := rawbroker.Listen(t)
			c := newClient(t, srv.URL(), eventloop.Options{WriteTimeout: 10 * time.Minute, MaxInflight: 1000})
			peer, err := srv.Accept(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := peer.ExpectConnect(); err != nil {
				t.Fatal(err)
			}
			if err := peer.SendConnack(false, 0, nil); err != nil {
				t.Fatal(err)
			}
			c.expectConnected()
			// 32 MiB: far more than the socket buffers hold.
			const n, size = 32, 1 << 20
			for i := 0; i < n; i++ {
				c.send(eventloop.Publish{Topic: "big", QoS: 1, Payload: make([]byte, size), Tag: i})
			}
			// The client is writing: read the start, then stop.
			if _, err := io.CopyN(io.Discard, peer.Conn(), 64<<10); err != nil {
				t.Fatal(err)
			}
			tc.stop(c)
			err = c.end()
			if !errors.Is(err, tc.want) {
				t.Fatalf("run ended with %v, want %v", err, tc.want)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("run ended with %v, want it to wrap %v", err, tc.also)
			}
			if errors.Is(err, eventloop.ErrConnectionLost) {
				t.Fatalf("run ended with %v, not ErrConnectionLost", err)
			}
			// Every publish is in the session or still in the channel (the
			// loop stopped taking requests).
			st := c.loop.State()
			if got := st.InFlight() + st.Queued() + len(c.reqs); got != n {
				t.Fatalf("%d publishes in the session and %d in the channel, want all %d", st.InFlight()+st.Queued(), len(c.reqs), n)
			}
		})
	}
}
