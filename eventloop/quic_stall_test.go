package eventloop_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// stallingQUICBroker is a minimal MQTT-over-QUIC peer: it accepts one
// connection and its control stream, answers CONNECT with CONNACK, and
// reads only what the test asks for. Its small receive windows make a
// client write block on flow control as soon as it stops reading.
type stallingQUICBroker struct {
	ln     *quic.Listener
	conn   *quic.Conn
	stream *quic.Stream
}

func listenStallingQUIC(t *testing.T) *stallingQUICBroker {
	t.Helper()
	certs := testcerts.Get()
	tlsConf := certs.ServerConfig(certs.Server, false).Clone()
	tlsConf.NextProtos = []string{"mqtt"}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, &quic.Config{
		InitialStreamReceiveWindow:     64 << 10,
		MaxStreamReceiveWindow:         64 << 10,
		InitialConnectionReceiveWindow: 128 << 10,
		MaxConnectionReceiveWindow:     128 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &stallingQUICBroker{ln: ln}
	t.Cleanup(func() {
		if b.conn != nil {
			_ = b.conn.CloseWithError(0, "")
		}
		_ = ln.Close()
	})
	return b
}

func (b *stallingQUICBroker) url() string { return "quic://" + b.ln.Addr().String() }

// accept takes the connection and its control stream, reads CONNECT and
// sends an MQTT 5 CONNACK (success, no session present).
func (b *stallingQUICBroker) accept(ctx context.Context) error {
	var err error
	if b.conn, err = b.ln.Accept(ctx); err != nil {
		return err
	}
	if b.stream, err = b.conn.AcceptStream(ctx); err != nil {
		return err
	}
	var hdr [1]byte
	if _, err := io.ReadFull(b.stream, hdr[:]); err != nil {
		return err
	}
	if hdr[0] != 0x10 {
		return errors.New("first packet is not CONNECT")
	}
	size, mult := 0, 1
	for {
		if _, err := io.ReadFull(b.stream, hdr[:]); err != nil {
			return err
		}
		size += int(hdr[0]&0x7f) * mult
		if hdr[0]&0x80 == 0 {
			break
		}
		mult *= 128
	}
	if _, err := io.CopyN(io.Discard, b.stream, int64(size)); err != nil {
		return err
	}
	_, err = b.stream.Write([]byte{0x20, 0x03, 0x00, 0x00, 0x00})
	return err
}

// TestQUICBrokerStopsReading is TestBrokerStopsReading over QUIC: the
// broker stops reading its control stream, so the loop's write waits for
// flow control credit that never comes. Cancelling the context, Close,
// Shutdown and Disconnect must still end the run at once, each with its
// own error, and leave every publish in the session. WriteTimeout is 10
// minutes: without the write interrupt the run would end only then, so
// the test fails on its own timeout. The broker never reads again before
// the run has ended.
func TestQUICBrokerStopsReading(t *testing.T) {
	for _, tc := range stopCases {
		t.Run(tc.name, func(t *testing.T) {
			b := listenStallingQUIC(t)
			c := newClient(t, b.url(), quicOptions(eventloop.Options{WriteTimeout: 10 * time.Minute, MaxInflight: 1000}))
			if err := b.accept(testContext(t)); err != nil {
				t.Fatal(err)
			}
			if conn := c.expectConnected(); conn.Transport != "quic" {
				t.Fatalf("connected over %q", conn.Transport)
			}
			// 32 MiB: far more than the broker's receive windows.
			const n, size = 32, 1 << 20
			for i := 0; i < n; i++ {
				c.send(eventloop.Publish{Topic: "big", QoS: 1, Payload: make([]byte, size), Tag: i})
			}
			// The client is writing: read the start, then stop.
			if _, err := io.CopyN(io.Discard, b.stream, 64<<10); err != nil {
				t.Fatal(err)
			}
			tc.stop(c)
			err := c.end()
			if !errors.Is(err, tc.want) {
				t.Fatalf("run ended with %v, want %v", err, tc.want)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("run ended with %v, want it to wrap %v", err, tc.also)
			}
			if errors.Is(err, eventloop.ErrConnectionLost) {
				t.Fatalf("run ended with %v, not ErrConnectionLost", err)
			}
			st := c.loop.State()
			if got := st.InFlight() + st.Queued() + len(c.reqs); got != n {
				t.Fatalf("%d publishes in the session and %d in the channel, want all %d", st.InFlight()+st.Queued(), len(c.reqs), n)
			}
		})
	}
}
