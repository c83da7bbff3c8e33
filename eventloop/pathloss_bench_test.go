package eventloop_test

// BenchmarkPathLoss measures how long traffic stops when the network path
// under a connection dies (a change of network, a NAT that forgot the
// mapping): the client's path is blackholed while it publishes QoS 1
// messages every 5 ms, and the time from the blackhole to the first
// acknowledgement of a message published after it is one op. It splits
// into detection (until the loop knows the path is dead: Disconnected, or
// the start of the path change) and recovery (from there to the first
// acknowledgement).
//
//	quic-migrate    QUIC; the loop notices the stall (QUIC probe timeouts)
//	                and migrates to a new UDP socket: no CONNECT, no replay
//	quic-reconnect  QUIC with QUICNoMigration and AckTimeout: a new QUIC
//	                connection, CONNECT, replay
//	tcp-reconnect   TCP with AckTimeout: a new TCP connection, CONNECT,
//	                replay
//
// A TCP connection cannot notice a dead path by itself (its
// retransmissions go on for minutes); the reconnect cases use AckTimeout
// (ackTimeout below: the shortest silence the QUIC loss detection takes
// for a dead path) so that detection costs about the same, and reconnect without
// back-off (the default back-off would add its first delay, 250 ms ±
// jitter). Each case runs with no added delay and with 10 ms each way
// (20 ms round trip) through the fault proxies.
//
//	go test ./eventloop/ -run '^$' -bench PathLoss -benchtime=20x -count=3

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/faultproxy"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/internal/udpproxy"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
)

const ackTimeout = 250 * time.Millisecond

func BenchmarkPathLoss(b *testing.B) {
	for _, delay := range []time.Duration{0, 10 * time.Millisecond} {
		for _, mode := range []string{"quic-migrate", "quic-reconnect", "tcp-reconnect"} {
			b.Run(fmt.Sprintf("rtt=%v/%s", 2*delay, mode), func(b *testing.B) {
				benchPathLoss(b, mode, delay)
			})
		}
	}
}

// benchLoop runs a loop on a goroutine of the benchmark and forwards its
// notifications.
type benchLoop struct {
	loop *eventloop.EventLoop
	reqs chan eventloop.Request
	out  chan eventloop.Notification
	done chan struct{}
	err  error
}

func startBenchLoop(b *testing.B, opts eventloop.Options) *benchLoop {
	b.Helper()
	loop, err := eventloop.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &benchLoop{loop: loop, reqs: make(chan eventloop.Request, 1024), out: make(chan eventloop.Notification, 4096), done: make(chan struct{})}
	events := loop.Run(ctx, l.reqs)
	go func() {
		defer close(l.done)
		defer close(l.out)
		for {
			n, err := events.Next()
			if err != nil {
				l.err = err
				return
			}
			l.out <- n
		}
	}()
	b.Cleanup(func() { cancel(); <-l.done })
	return l
}

// next returns the next notification, failing on the end of the run or
// after a minute.
func (l *benchLoop) next(b *testing.B) eventloop.Notification {
	select {
	case n, ok := <-l.out:
		if !ok {
			b.Fatalf("run ended: %v", l.err)
		}
		return n
	case <-time.After(time.Minute):
		b.Fatal("no notification within a minute")
	}
	return nil
}

func benchPathLoss(b *testing.B, mode string, delay time.Duration) {
	broker := mqtttest.StartT(b, mqtttest.Options{QUIC: true, DisableCapture: true})
	opts := eventloop.Options{
		ClientID:      uniqueID("pathloss"),
		Reconnect:     reconnect.Automatic,
		SessionExpiry: time.Hour,
		BackOff:       &backoff.ZeroBackOff{},
		TLSConfig:     testcerts.Get().ClientConfig(),
	}
	var cut func()
	switch mode {
	case "tcp-reconnect":
		p := faultproxy.StartT(b, broker.Addr())
		p.SetDelay(delay)
		opts.Servers = []string{p.URL()}
		opts.AckTimeout = ackTimeout
		cut = func() { p.BlackholeOpen() }
	default:
		p := udpproxy.StartT(b, strings.TrimPrefix(broker.QUICURL(), "quic://"))
		p.SetDelay(delay)
		opts.Servers = []string{p.URL()}
		if mode == "quic-reconnect" {
			opts.QUICNoMigration = true
			opts.AckTimeout = ackTimeout
		}
		// The newest client address is the path in use: a migration or a
		// new connection opens a new socket.
		cut = func() {
			cs := p.Clients()
			p.Blackhole(cs[len(cs)-1], true)
		}
	}
	l := startBenchLoop(b, opts)
	if _, ok := l.next(b).(eventloop.Connected); !ok {
		b.Fatal("first notification is not Connected")
	}
	topic := uniqueID("pathloss")
	seq := 0
	publish := func() {
		l.reqs <- eventloop.Publish{Topic: topic, QoS: 1, Payload: binary.BigEndian.AppendUint32(nil, uint32(seq)), Tag: seq}
		seq++
	}
	// drain waits until every message published so far is acknowledged.
	acked := map[int]bool{}
	drain := func() {
		for len(acked) < seq {
			if p, ok := l.next(b).(eventloop.Published); ok {
				acked[p.Request.Tag.(int)] = true
			}
		}
	}
	publish()
	drain()

	var took, detect, recover []time.Duration
	reconnects, migrations := 0, 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Steady traffic, then the path dies.
		for j := 0; j < 10; j++ {
			<-tick.C
			publish()
		}
		cut()
		start := time.Now()
		first := seq
		var detected time.Duration
	wait:
		for {
			select {
			case <-tick.C:
				publish()
			case n, ok := <-l.out:
				if !ok {
					b.Fatalf("run ended: %v", l.err)
				}
				switch n := n.(type) {
				case eventloop.Published:
					acked[n.Request.Tag.(int)] = true
					if n.Request.Tag.(int) >= first {
						t := time.Since(start)
						took = append(took, t)
						detect = append(detect, detected)
						recover = append(recover, t-detected)
						break wait
					}
				case eventloop.Disconnected:
					detected = time.Since(start)
				case eventloop.Connected:
					reconnects++
				case eventloop.PathChanged:
					migrations++
					detected = time.Since(start) - n.Took
				}
			}
		}
		b.StopTimer()
		drain()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(reconnects)/float64(b.N), "reconnects/op")
	b.ReportMetric(float64(migrations)/float64(b.N), "migrations/op")
	slices.Sort(detect)
	slices.Sort(recover)
	b.ReportMetric(float64(detect[len(detect)/2].Microseconds())/1000, "p50-detect-ms")
	b.ReportMetric(float64(recover[len(recover)/2].Microseconds())/1000, "p50-recover-ms")
	// A QUIC connection keeps the socket of every path it left
	// (netio.MaxQUICPaths): every 15th change reconnects instead.
	if limit := b.N / (netio.MaxQUICPaths - 1); mode == "quic-migrate" && (reconnects > limit || migrations+reconnects != b.N) {
		b.Errorf("%d reconnects and %d migrations for %d path losses", reconnects, migrations, b.N)
	}
	if errors.Is(l.err, eventloop.ErrConnectionLost) {
		b.Fatal(l.err)
	}
}
