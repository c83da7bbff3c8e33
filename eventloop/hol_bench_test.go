package eventloop_test

// BenchmarkHeadOfLine measures what a large transfer does to small
// messages on the same connection: a 5 MiB QoS 1 publish is always in
// flight (the next one starts when the broker acknowledges the last),
// while small QoS 1 messages go out every 10 ms on another topic; one op
// is one small message, and p50-ms/p99-ms are the times from handing each
// to the loop to its PUBACK.
//
//	quic-multi   QUIC, the large publishes on data stream 1, the small
//	             ones on data stream 2 (Options.QUICStreams)
//	quic-single  QUIC, everything on the control stream
//	tcp          TCP
//	quic-nobig   QUIC without the large publishes: what the loss alone
//	             costs the small messages
//
// The UDP fault proxy drops 1.5 % of datagrams each way and delays each by
// 10 ms (20 ms round trip). The TCP fault proxy delays the same, but
// cannot drop: TCP retransmits below the proxy, and there is no netem
// on this machine to drop segments for real, so the tcp case runs without
// loss (which flatters it). big-MiB/s is the rate of the large publishes.
//
//	go test ./eventloop/ -run '^$' -bench HeadOfLine -benchtime=1000x -count=1

import (
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
	"github.com/mqttloop/mqttloop/reconnect"
)

const (
	holBig   = 5 << 20
	holDelay = 10 * time.Millisecond
	holLoss  = 0.015
)

func BenchmarkHeadOfLine(b *testing.B) {
	for _, mode := range []string{"quic-multi", "quic-single", "tcp", "quic-nobig"} {
		b.Run(mode, func(b *testing.B) { benchHeadOfLine(b, mode) })
	}
}

func benchHeadOfLine(b *testing.B, mode string) {
	broker := mqtttest.StartT(b, mqtttest.Options{QUIC: true, DisableCapture: true})
	opts := eventloop.Options{
		ClientID:     uniqueID("hol"),
		Reconnect:    reconnect.Never,
		BackOff:      &backoff.ZeroBackOff{},
		TLSConfig:    testcerts.Get().ClientConfig(),
		WriteTimeout: time.Minute,
	}
	switch mode {
	case "tcp":
		p := faultproxy.StartT(b, broker.Addr())
		p.SetDelay(holDelay)
		opts.Servers = []string{p.URL()}
	default:
		p := udpproxy.StartT(b, strings.TrimPrefix(broker.QUICURL(), "quic://"))
		p.SetDelay(holDelay)
		p.SetLoss(holLoss, 1)
		opts.Servers = []string{p.URL()}
		if mode == "quic-multi" {
			opts.QUICStreams = func(r eventloop.Request) int {
				if p, ok := r.(eventloop.Publish); ok && strings.HasSuffix(p.Topic, "/big") {
					return 1
				}
				return 2
			}
		}
	}
	l := startBenchLoop(b, opts)
	if _, ok := l.next(b).(eventloop.Connected); !ok {
		b.Fatal("first notification is not Connected")
	}
	topic := uniqueID("hol")
	big := make([]byte, holBig)
	bigs := 0
	sendBig := func() {
		if mode != "quic-nobig" {
			l.reqs <- eventloop.Publish{Topic: topic + "/big", QoS: 1, Payload: big, Tag: "big"}
		}
	}
	var lat []time.Duration
	sent := map[int]time.Time{}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	n := 0
	b.ResetTimer()
	start := time.Now()
	sendBig()
	for len(lat) < b.N {
		select {
		case <-tick.C:
			if n < b.N {
				sent[n] = time.Now()
				l.reqs <- eventloop.Publish{Topic: topic + "/small", QoS: 1, Payload: []byte("small"), Tag: n}
				n++
			}
		case ev, ok := <-l.out:
			if !ok {
				b.Fatalf("run ended: %v", l.err)
			}
			p, ok := ev.(eventloop.Published)
			if !ok {
				if rf, isRF := ev.(eventloop.RequestFailed); isRF {
					b.Fatal(rf.Err)
				}
				continue
			}
			if p.Err != nil {
				b.Fatal(p.Err)
			}
			if p.Request.Tag == "big" {
				bigs++
				sendBig()
				continue
			}
			lat = append(lat, time.Since(sent[p.Request.Tag.(int)]))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(bigs)*holBig/(1<<20)/elapsed.Seconds(), "big-MiB/s")
}
