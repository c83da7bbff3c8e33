package eventloop_test

// BenchmarkFirstAck measures what the transports cost when the network
// comes back: the time from the start of a run (the loop has a QoS 1
// publish queued, the broker has the session) to that publish's PUBACK,
// over a path with a round trip of 2 × delay. Every op reuses the same
// loop, so TLS resumes its session and QUIC has a ticket for 0-RTT, as
// after a real outage.
//
//	tcp        TCP connect, CONNECT/CONNACK, PUBLISH/PUBACK: 3 round trips
//	tls        TLS 1.3 over TCP, resumed: 4 round trips
//	quic       QUIC handshake (1-RTT), CONNECT, PUBLISH: 3 round trips
//	quic-0rtt  CONNECT in the QUIC 0-RTT data (Options.QUIC0RTT): 2
//
// The fault proxies delay every datagram (UDP) and every chunk of the
// byte stream (TCP) by delay each way. The TCP proxy accepts connections
// itself, so it cannot delay a TCP handshake: the tcp and tls cases dial
// through a function that waits one round trip first, which is what the
// SYN and SYN-ACK would take.
//
//	go test ./eventloop/ -run '^$' -bench FirstAck -benchtime=20x -count=1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/faultproxy"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/internal/udpproxy"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
)

func BenchmarkFirstAck(b *testing.B) {
	for _, delay := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond} {
		for _, mode := range []string{"tcp", "tls", "quic", "quic-0rtt"} {
			b.Run(fmt.Sprintf("rtt=%v/%s", 2*delay, mode), func(b *testing.B) {
				benchFirstAck(b, mode, delay)
			})
		}
	}
}

func benchFirstAck(b *testing.B, mode string, delay time.Duration) {
	certs := testcerts.Get()
	broker := mqtttest.StartT(b, mqtttest.Options{QUIC: true, TLS: certs.ServerConfig(certs.Server, false), DisableCapture: true})
	opts := eventloop.Options{ClientID: uniqueID("firstack"), SessionExpiry: time.Hour, TLSConfig: certs.ClientConfig()}
	// slowDial waits one round trip (the TCP handshake the proxy cannot
	// delay) and dials with a session cache that outlives the runs.
	tlsConf := certs.ClientConfig()
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	slowDial := func(ctx context.Context, server string) (netio.Conn, error) {
		t := time.NewTimer(2 * delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		return netio.Dial(ctx, server, netio.DialOptions{TLS: tlsConf})
	}
	switch mode {
	case "tcp", "tls":
		upstream := broker.Addr()
		if mode == "tls" {
			upstream = broker.TLSAddr()
		}
		p := faultproxy.StartT(b, upstream)
		p.SetDelay(delay)
		scheme := "mqtt://"
		if mode == "tls" {
			scheme = "mqtts://"
		}
		opts.Servers = []string{scheme + p.Addr()}
		opts.Dial = slowDial
	default:
		p := udpproxy.StartT(b, strings.TrimPrefix(broker.QUICURL(), "quic://"))
		p.SetDelay(delay)
		opts.Servers = []string{p.URL()}
		opts.QUIC0RTT = mode == "quic-0rtt"
	}
	loop, err := eventloop.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	// One run per op: a publish is queued before the run starts.
	var connTook []time.Duration
	run := func() (time.Duration, eventloop.Connected) {
		reqs := make(chan eventloop.Request, 2)
		reqs <- eventloop.Publish{Topic: "firstack/" + mode, QoS: 1, Payload: []byte("back")}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		events := loop.Run(ctx, reqs)
		var took time.Duration
		var conn eventloop.Connected
		for {
			n, err := events.Next()
			if err != nil {
				if !errors.Is(err, eventloop.ErrDisconnected) {
					b.Fatalf("run ended with %v", err)
				}
				return took, conn
			}
			switch n := n.(type) {
			case eventloop.Connected:
				conn = n
				connTook = append(connTook, time.Since(start))
			case eventloop.Published:
				if n.Err != nil {
					b.Fatal(n.Err)
				}
				took = time.Since(start)
				reqs <- eventloop.Disconnect{}
			case eventloop.Disconnected, eventloop.Reconnecting:
				if took == 0 {
					b.Fatalf("%T before the first ack", n)
				}
			}
		}
	}
	run() // the first connection gets the session ticket
	connTook = connTook[:0]
	var took []time.Duration
	used0RTT := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, conn := run()
		took = append(took, d)
		if conn.Used0RTT {
			used0RTT++
		}
	}
	b.StopTimer()
	slices.Sort(took)
	rtt := 2 * delay
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)/2])/float64(rtt), "p50-rtts")
	b.ReportMetric(float64(used0RTT)/float64(b.N), "0rtt/op")
	slices.Sort(connTook)
	b.ReportMetric(float64(connTook[len(connTook)/2])/float64(rtt), "p50-connack-rtts")
	if mode == "quic-0rtt" && used0RTT != b.N {
		b.Errorf("0-RTT used on %d of %d reconnects", used0RTT, b.N)
	}
}
