//go:build unix

package eventloop_test

// Benchmarks of the event loop against a reader-goroutine baseline.
//
// Every benchmark runs against several brokers and two clients:
//
//	brokers  sink       the acking sink of internal/sink in a child process
//	                    (the test binary re-executed), so that cpu-µs/msg is
//	                    the client's own CPU
//	         sinkinproc the same sink inside the benchmark process (only when
//	                    selected with MQTTLOOP_BENCH_BROKERS)
//	         mosquitto  a real mosquitto (skipped if not installed), with
//	                    set_tcp_nodelay and no in-flight or queue limits
//	         mochi      the embedded mochi broker, in process: its CPU is in
//	                    cpu-µs/msg
//	clients  loop       eventloop.EventLoop
//	         baseline   the classic design: a goroutine reading the socket
//	                    with blocking reads and sending decoded packets on a
//	                    channel, the caller's goroutine selecting over that
//	                    channel and the requests channel; the same codec,
//	                    framing, session state and batching as the loop
//
// MQTTLOOP_BENCH_BROKERS=sink,mosquitto restricts the brokers.
//
// Metrics: ns/op is per message (per round trip for ping-pong), msgs/s (or
// rt/s) the rate, cpu-µs/msg the process's user+system CPU per message
// (getrusage RUSAGE_SELF: includes the broker when it runs in process),
// allocs/op and B/op the client's allocations (and an in-process broker's).
//
//	go test ./eventloop/ -run '^$' -bench . -benchtime=2s -count=1
//	go test ./eventloop/ -run '^$' -bench 'PingPong' -benchtime=2s -count=3
//	go test ./eventloop/ -run '^$' -bench 'IdleCPU' -benchtime=1x

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/sink"
	"github.com/mqttloop/mqttloop/internal/testbroker"
	"github.com/mqttloop/mqttloop/keepalive"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/state"
)

const (
	benchPayloadSize = 100
	benchInflight    = 100
	benchKeepAlive   = 60 * time.Second
	// benchQueue is the capacity of the requests channel a producer
	// goroutine fills in the pipelined benchmarks.
	benchQueue = 1024
	// idleDuration is how long BenchmarkIdleCPU leaves a client idle.
	idleDuration = 3 * time.Second
	// sinkProcessEnv makes TestBenchSinkProcess serve a sink.
	sinkProcessEnv = "MQTTLOOP_SINK_PROCESS"
)

var benchPayload = func() []byte {
	p := make([]byte, benchPayloadSize)
	for i := range p {
		p[i] = byte('A' + i%26)
	}
	return p
}()

// ---------------------------------------------------------------------
// Brokers

type benchBroker struct {
	name string
	url  string
	addr string
}

// forEachBenchBroker runs f as a sub-benchmark per broker, each started
// once for all of f's sub-benchmarks.
func forEachBenchBroker(b *testing.B, f func(b *testing.B, br benchBroker)) {
	names := []string{"sink", "mosquitto", "mochi"}
	if env := os.Getenv("MQTTLOOP_BENCH_BROKERS"); env != "" {
		names = strings.Split(env, ",")
	}
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			br := benchBroker{name: name}
			switch name {
			case "sink":
				br.addr = startSinkProcess(b)
			case "sinkinproc":
				br.addr = sink.StartT(b, sink.Options{ReceiveMaximum: 65535}).Addr()
			case "mosquitto":
				if !mosquittoInstalled() {
					b.Skip("mosquitto not installed")
				}
				br.addr = mosquitto.Start(b, mosquitto.Options{
					NoDelay: true,
					// No limit on messages in flight (also lifts the Receive
					// Maximum of 20 mosquitto announces by default) or
					// queued (QoS 0 messages to a slow client are otherwise
					// dropped).
					Extra: []string{"max_inflight_messages 0", "max_queued_messages 0"},
				}).Addr()
			case "mochi":
				br.addr = testbroker.StartT(b, testbroker.Options{DisableCapture: true}).Addr()
			default:
				b.Fatalf("unknown broker %q in MQTTLOOP_BENCH_BROKERS", name)
			}
			br.url = "mqtt://" + br.addr
			f(b, br)
		})
	}
}

// startSinkProcess runs the sink in a child process (this test binary,
// running only TestBenchSinkProcess) and returns its address. The child
// exits when its stdin is closed, at the end of b.
func startSinkProcess(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchSinkProcess$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), sinkProcessEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	drained := make(chan struct{})
	b.Cleanup(func() {
		_ = stdin.Close()
		<-drained
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "SINKADDR "); ok {
			addr = a
			break
		}
	}
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	if addr == "" {
		b.Fatalf("sink process gave no address (%v)", sc.Err())
	}
	return addr
}

// TestBenchSinkProcess is not a test: it is the child process of
// startSinkProcess, and skips unless MQTTLOOP_SINK_PROCESS=1.
func TestBenchSinkProcess(t *testing.T) {
	if os.Getenv(sinkProcessEnv) != "1" {
		t.Skip("the out-of-process sink of the benchmarks; runs only as their child")
	}
	s, err := sink.Start(sink.Options{ReceiveMaximum: 65535})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("SINKADDR %s\n", s.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
}

// ---------------------------------------------------------------------
// Clients

// benchClient is what the benchmarks drive: the loop, or the baseline.
type benchClient interface {
	Next() (eventloop.Notification, error)
	Close()
}

type clientConfig struct {
	url         string
	reqs        <-chan eventloop.Request
	maxInflight int
	ctx         context.Context // nil: context.Background()
}

type clientKind struct {
	name  string
	start func(tb testing.TB, cfg clientConfig) benchClient
}

var clientKinds = []clientKind{
	{"loop", startLoopClient},
	{"baseline", startBaselineClient},
}

func forEachClient(b *testing.B, f func(b *testing.B, kind clientKind)) {
	for _, k := range clientKinds {
		b.Run(k.name, func(b *testing.B) { f(b, k) })
	}
}

type loopClient struct {
	loop   *eventloop.EventLoop
	events *eventloop.Events
	cancel context.CancelFunc
	ended  bool
}

func startLoopClient(tb testing.TB, cfg clientConfig) benchClient {
	tb.Helper()
	loop, err := eventloop.New(eventloop.Options{
		Servers:     []string{cfg.url},
		ClientID:    uniqueID("bench"),
		CleanStart:  true,
		KeepAlive:   benchKeepAlive,
		MaxInflight: cfg.maxInflight,
	})
	if err != nil {
		tb.Fatal(err)
	}
	parent := cfg.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	c := &loopClient{loop: loop, events: loop.Run(ctx, cfg.reqs), cancel: cancel}
	n, err := c.events.Next()
	if err != nil {
		tb.Fatalf("loop: %v", err)
	}
	if _, ok := n.(eventloop.Connected); !ok {
		tb.Fatalf("loop: first notification %#v", n)
	}
	return c
}

func (c *loopClient) Next() (eventloop.Notification, error) {
	n, err := c.events.Next()
	if err != nil {
		c.ended = true
	}
	return n, err
}

func (c *loopClient) Close() {
	c.cancel()
	for !c.ended {
		_, _ = c.Next()
	}
}

// ---------------------------------------------------------------------
// Baseline: the reader-goroutine design

// baselineClient does the loop's work with the classic design: one
// goroutine reads the socket with blocking reads, frames and decodes the
// packets (netio.Reader) and sends them on a channel; Next, on the
// caller's goroutine, handles packets from that channel, takes requests
// from the requests channel without blocking, sends them (netio.Writer,
// state.MqttState, one flush per iteration), and when there is nothing to
// do blocks in a select over the packet channel, the requests channel, the
// context and the keepalive timer.
type baselineClient struct {
	nc   net.Conn
	conn blockingConn
	wr   *netio.Writer
	st   *state.MqttState
	ka   *keepalive.Timer
	ctx  context.Context

	reqs      <-chan eventloop.Request
	reqOpen   bool
	reqDone   bool
	maxQueued int

	pkts    chan *packets.ControlPacket
	quit    chan struct{} // closed by Close: the reader stops sending
	rdone   chan struct{} // closed when the reader exited
	rerr    error         // the reader's error, valid after pkts is closed
	timer   *time.Timer
	timerAt time.Time

	events []eventloop.Notification
	head   int
	endErr error
}

// blockingConn adapts a net.Conn to netio.Conn for the baseline: ReadWait
// is a plain blocking Read (the runtime parks the reader goroutine in the
// netpoller), Write and SetWriteDeadline are the net.Conn's.
type blockingConn struct{ net.Conn }

func (c blockingConn) ReadNow([]byte) (int, error) {
	return 0, errors.New("baseline: ReadNow not used")
}
func (c blockingConn) ReadWait(p []byte, _ time.Time) (int, error) { return c.Conn.Read(p) }
func (c blockingConn) Arm() (netio.Readiness, error)               { return netio.Readiness{}, nil }
func (c blockingConn) Disarm()                                     {}
func (c blockingConn) Transport() string                           { return "tcp" }

const (
	baselineBatch     = 256 // as the loop's requestBatch
	baselineMaxQueued = eventloop.DefaultMaxQueued
	baselinePktBuffer = 256 // capacity of the packet channel
)

var errBaselineLost = errors.New("baseline: connection lost")

func startBaselineClient(tb testing.TB, cfg clientConfig) benchClient {
	tb.Helper()
	c, err := dialBaseline(cfg)
	if err != nil {
		tb.Fatalf("baseline: %v", err)
	}
	return c
}

func dialBaseline(cfg clientConfig) (*baselineClient, error) {
	addr := strings.TrimPrefix(cfg.url, "mqtt://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = nc.(*net.TCPConn).SetNoDelay(true)
	ctx := cfg.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	maxInflight := cfg.maxInflight
	if maxInflight == 0 {
		maxInflight = eventloop.DefaultMaxInflight
	}
	c := &baselineClient{
		nc:        nc,
		conn:      blockingConn{nc},
		wr:        netio.NewWriter(0),
		st:        state.New(state.Config{MaxInflight: maxInflight}),
		ctx:       ctx,
		reqs:      cfg.reqs,
		reqOpen:   cfg.reqs != nil,
		maxQueued: baselineMaxQueued,
		pkts:      make(chan *packets.ControlPacket, baselinePktBuffer),
		quit:      make(chan struct{}),
		rdone:     make(chan struct{}),
		timer:     time.NewTimer(time.Hour),
	}
	c.timer.Stop()
	// CONNECT and CONNACK, synchronously, before the reader starts.
	mps := uint32(eventloop.DefaultMaxPacketSize)
	connect := &packets.Connect{
		ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: uniqueID("baseline"),
		KeepAlive: uint16(benchKeepAlive / time.Second), CleanStart: true,
		Properties: &packets.Properties{MaximumPacketSize: &mps},
	}
	if err := c.wr.Append(connect); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.wr.Flush(c.conn, time.Now().Add(eventloop.DefaultConnectTimeout)); err != nil {
		nc.Close()
		return nil, err
	}
	rd := netio.NewReader(eventloop.DefaultMaxPacketSize)
	var ack *packets.Connack
	for ack == nil {
		cp, err := rd.Next()
		if err != nil {
			nc.Close()
			return nil, err
		}
		if cp == nil {
			if _, err := rd.FillWait(c.conn, time.Time{}); err != nil {
				nc.Close()
				return nil, err
			}
			continue
		}
		a, ok := cp.Content.(*packets.Connack)
		if !ok || a.ReasonCode >= 0x80 {
			nc.Close()
			return nil, fmt.Errorf("baseline: no successful CONNACK: %#v", cp.Content)
		}
		ack = a
	}
	now := time.Now()
	c.st.Connected(ack)
	c.wr.SetMaxPacketSize(int(c.st.Limits().MaximumPacketSize))
	c.ka = keepalive.New(benchKeepAlive, eventloop.DefaultPingTimeout, now)
	go c.readLoop(rd)
	return c, nil
}

// readLoop is the reader goroutine.
func (c *baselineClient) readLoop(rd *netio.Reader) {
	defer close(c.rdone)
	defer close(c.pkts)
	for {
		for {
			cp, err := rd.Next()
			if err != nil {
				c.rerr = err
				return
			}
			if cp == nil {
				break
			}
			select {
			case c.pkts <- cp:
			case <-c.quit:
				return
			}
		}
		if _, err := rd.FillWait(c.conn, time.Time{}); err != nil {
			c.rerr = err
			return
		}
	}
}

func (c *baselineClient) Next() (eventloop.Notification, error) {
	for {
		if c.head < len(c.events) {
			n := c.events[c.head]
			c.events[c.head] = nil
			c.head++
			if c.head == len(c.events) {
				c.events, c.head = c.events[:0], 0
			}
			return n, nil
		}
		if c.endErr != nil {
			return nil, c.endErr
		}
		c.step()
	}
}

// step is one iteration, the counterpart of the loop's.
func (c *baselineClient) step() {
	if err := c.ctx.Err(); err != nil {
		c.farewell()
		c.end(fmt.Errorf("%w: %w", eventloop.ErrStopped, err))
		return
	}
	progress := false
	now := time.Now()
	got := false
drain:
	for range baselineBatch {
		select {
		case cp, ok := <-c.pkts:
			if !ok {
				c.lost()
				return
			}
			got = true
			if !c.handle(cp) {
				return
			}
		default:
			break drain
		}
	}
	if got {
		progress = true
		c.ka.Received(now)
	}
	if c.takeRequests() {
		progress = true
	}
	if c.endErr != nil {
		return
	}
	if c.sendQueued() {
		progress = true
	}
	switch act, _ := c.ka.Check(now); act {
	case keepalive.SendPing:
		_ = c.wr.Append(&packets.Pingreq{})
		c.ka.PingSent(now)
	case keepalive.Dead:
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, eventloop.ErrKeepAliveTimeout))
		return
	}
	if !c.flush(now) {
		return
	}
	if c.reqDone && c.st.Idle() {
		c.farewell()
		c.end(eventloop.ErrRequestsDone)
		return
	}
	if progress || c.head < len(c.events) {
		return
	}
	// Nothing to do: block.
	_, due := c.ka.Check(now)
	if !due.IsZero() && (c.timerAt.IsZero() || due.Before(c.timerAt)) {
		c.timer.Reset(due.Sub(now))
		c.timerAt = due
	}
	var reqs <-chan eventloop.Request
	if c.canTake() {
		reqs = c.reqs
	}
	select {
	case cp, ok := <-c.pkts:
		if !ok {
			c.lost()
			return
		}
		c.ka.Received(time.Now())
		c.handle(cp)
	case r, ok := <-reqs:
		if !ok {
			c.reqOpen, c.reqDone = false, true
		} else {
			c.accept(r)
		}
	case <-c.timer.C:
		c.timerAt = time.Time{}
	case <-c.ctx.Done():
	}
}

func (c *baselineClient) canTake() bool {
	return c.reqOpen && c.st.Queued() < c.maxQueued
}

func (c *baselineClient) takeRequests() bool {
	took := false
	for i := 0; i < baselineBatch && c.canTake(); i++ {
		select {
		case r, ok := <-c.reqs:
			took = true
			if !ok {
				c.reqOpen, c.reqDone = false, true
				return took
			}
			c.accept(r)
		default:
			return took
		}
	}
	return took
}

func (c *baselineClient) accept(r eventloop.Request) {
	switch r := r.(type) {
	case eventloop.Publish:
		if err := state.ValidateTopicName(r.Topic); err != nil {
			c.emit(eventloop.RequestFailed{Request: r, Err: err})
			return
		}
		if err := state.ValidateQoS(r.QoS); err != nil {
			c.emit(eventloop.RequestFailed{Request: r, Err: err})
			return
		}
		p := &packets.Publish{Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain}
		c.st.Enqueue(state.Pending{Packet: p, Tag: r})
	case eventloop.Subscribe:
		p := &packets.Subscribe{Properties: &packets.Properties{}}
		for _, f := range r.Filters {
			if err := state.ValidateTopicFilter(f.Topic); err != nil {
				c.emit(eventloop.RequestFailed{Request: r, Err: err})
				return
			}
			p.Subscriptions = append(p.Subscriptions, packets.SubOptions{Topic: f.Topic, QoS: f.QoS})
		}
		c.st.Enqueue(state.Pending{Packet: p, Tag: r})
	default:
		c.emit(eventloop.RequestFailed{Request: r, Err: eventloop.ErrInvalidRequest})
	}
}

func (c *baselineClient) sendQueued() bool {
	sent := false
	for range baselineBatch {
		p, pkt, ok, err := c.st.NextToSend()
		if !ok {
			return sent
		}
		sent = true
		if err != nil {
			r, _ := p.Tag.(eventloop.Request)
			c.emit(eventloop.RequestFailed{Request: r, Err: err})
			continue
		}
		if err := c.wr.Append(pkt); err != nil {
			c.st.Abandon(pkt)
			r, _ := p.Tag.(eventloop.Request)
			c.emit(eventloop.RequestFailed{Request: r, Err: err})
			continue
		}
		if c.wr.Buffered() >= 64<<10 && !c.flush(time.Now()) {
			return sent
		}
	}
	return sent
}

func (c *baselineClient) handle(cp *packets.ControlPacket) bool {
	ev, reply, err := c.st.HandleIncoming(cp)
	if err != nil {
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
		return false
	}
	if reply != nil {
		if err := c.wr.Append(reply); err != nil {
			c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
			return false
		}
	}
	switch ev := ev.(type) {
	case state.Delivered:
		p := ev.Publish
		c.emit(eventloop.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Duplicate: p.Duplicate, PacketID: p.PacketID})
	case state.PublishDone:
		req, _ := ev.Tag.(eventloop.Publish)
		c.emit(eventloop.Published{Request: req, ReasonCode: ev.ReasonCode})
	case state.SubscribeDone:
		req, _ := ev.Tag.(eventloop.Subscribe)
		c.emit(eventloop.Subscribed{Request: req, ReasonCodes: ev.Suback.Reasons})
	case state.BrokerDisconnect:
		c.end(fmt.Errorf("%w: broker sent DISCONNECT", eventloop.ErrConnectionLost))
		return false
	}
	return true
}

func (c *baselineClient) flush(now time.Time) bool {
	if c.wr.Buffered() == 0 {
		return true
	}
	if err := c.wr.Flush(c.conn, now.Add(eventloop.DefaultWriteTimeout)); err != nil {
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
		return false
	}
	c.ka.Sent(now)
	return true
}

func (c *baselineClient) emit(n eventloop.Notification) { c.events = append(c.events, n) }

func (c *baselineClient) farewell() {
	if c.endErr != nil {
		return
	}
	c.wr.Reset()
	if c.wr.Append(&packets.Disconnect{Properties: &packets.Properties{}}) == nil {
		_ = c.wr.Flush(c.conn, time.Now().Add(time.Second))
	}
}

func (c *baselineClient) lost() {
	c.end(fmt.Errorf("%w: %w: %w", eventloop.ErrConnectionLost, errBaselineLost, c.rerr))
}

// end ends the run: the connection is closed and the reader stopped.
func (c *baselineClient) end(err error) {
	if c.endErr != nil {
		return
	}
	c.endErr = err
	c.stopReader()
}

func (c *baselineClient) stopReader() {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	_ = c.nc.Close()
	<-c.rdone
	c.timer.Stop()
}

func (c *baselineClient) Close() {
	if c.endErr == nil {
		c.farewell()
		c.end(eventloop.ErrStopped)
	}
}

// ---------------------------------------------------------------------
// Measurement helpers

// processCPU returns the user+system CPU time of the whole process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter measures a benchmark's messages from the moment it is started.
type meter struct {
	b    *testing.B
	cpu0 time.Duration
	rate string
}

// startMeter resets the benchmark timer and starts measuring CPU.
func startMeter(b *testing.B, rateUnit string) *meter {
	b.ReportAllocs()
	b.ResetTimer()
	return &meter{b: b, cpu0: processCPU(), rate: rateUnit}
}

// stop stops the timer and reports msgs messages.
func (m *meter) stop(msgs int) {
	cpu := processCPU() - m.cpu0
	m.b.StopTimer()
	if msgs <= 0 {
		return
	}
	m.b.ReportMetric(float64(msgs)/m.b.Elapsed().Seconds(), m.rate)
	m.b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(msgs), "cpu-µs/msg")
}

func benchPublish(qos byte) eventloop.Request {
	return eventloop.Publish{Topic: "bench/publish", Payload: benchPayload, QoS: qos}
}

// ---------------------------------------------------------------------
// Benchmarks

// BenchmarkPingPongQoS1 publishes one QoS 1 message and waits for its
// Published notification, b.N times: ns/op is the round trip.
func BenchmarkPingPongQoS1(b *testing.B) {
	forEachBenchBroker(b, func(b *testing.B, br benchBroker) {
		forEachClient(b, func(b *testing.B, kind clientKind) {
			reqs := make(chan eventloop.Request, 1)
			c := kind.start(b, clientConfig{url: br.url, reqs: reqs, maxInflight: benchInflight})
			defer c.Close()
			req := benchPublish(1)
			m := startMeter(b, "rt/s")
			for range b.N {
				reqs <- req
				for {
					n, err := c.Next()
					if err != nil {
						b.Fatal(err)
					}
					if p, ok := n.(eventloop.Published); ok {
						if p.Err != nil {
							b.Fatal(p.Err)
						}
						break
					}
				}
			}
			m.stop(b.N)
		})
	})
}

// BenchmarkPublishQoS1 is pipelined QoS 1 publishing with 100 messages in
// flight: a producer goroutine fills the requests channel with b.N
// publishes and closes it; the run ends (ErrRequestsDone) once all are
// acknowledged.
func BenchmarkPublishQoS1(b *testing.B) {
	benchPipelined(b, 1)
}

// BenchmarkPublishQoS0 is pipelined QoS 0 publishing: the run ends
// (ErrRequestsDone) when the closed requests channel is drained and
// everything was written.
func BenchmarkPublishQoS0(b *testing.B) {
	benchPipelined(b, 0)
}

func benchPipelined(b *testing.B, qos byte) {
	forEachBenchBroker(b, func(b *testing.B, br benchBroker) {
		forEachClient(b, func(b *testing.B, kind clientKind) {
			// The producer starts once the client is connected, so that
			// connecting is not measured.
			reqs := make(chan eventloop.Request, benchQueue)
			c := kind.start(b, clientConfig{url: br.url, reqs: reqs, maxInflight: benchInflight})
			defer c.Close()
			m := startMeter(b, "msgs/s")
			req := benchPublish(qos)
			go func() {
				defer close(reqs)
				for range b.N {
					reqs <- req
				}
			}()
			done := 0
			for {
				n, err := c.Next()
				if err != nil {
					if !errors.Is(err, eventloop.ErrRequestsDone) {
						b.Fatal(err)
					}
					break
				}
				if p, ok := n.(eventloop.Published); ok {
					if p.Err != nil {
						b.Fatal(p.Err)
					}
					done++
				}
			}
			m.stop(b.N)
			if qos > 0 && done != b.N {
				b.Fatalf("%d publishes completed, want %d", done, b.N)
			}
		})
	})
}

// BenchmarkReceiveQoS0 receives b.N QoS 0 messages of 100 bytes. The sink
// streams them after the SUBACK; mosquitto and mochi get them from a raw
// publisher connection, paced so that at most a few thousand messages are
// on their way (mochi drops QoS 0 messages beyond 8192 pending per client).
func BenchmarkReceiveQoS0(b *testing.B) {
	forEachBenchBroker(b, func(b *testing.B, br benchBroker) {
		forEachClient(b, func(b *testing.B, kind clientKind) {
			reqs := make(chan eventloop.Request, 1)
			c := kind.start(b, clientConfig{url: br.url, reqs: reqs, maxInflight: benchInflight})
			defer c.Close()
			topic := "bench/receive/" + uniqueID(kind.name)
			if strings.HasPrefix(br.name, "sink") {
				topic = sink.StreamTopic(b.N, benchPayloadSize)
			}
			reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: 0}}}
			for {
				n, err := c.Next()
				if err != nil {
					b.Fatal(err)
				}
				if s, ok := n.(eventloop.Subscribed); ok {
					if err := s.Err(); err != nil {
						b.Fatal(err)
					}
					break
				}
			}
			var pub *pacedPublisher
			m := startMeter(b, "msgs/s")
			if !strings.HasPrefix(br.name, "sink") {
				pub = startPacedPublisher(b, br.addr, topic, b.N)
			}
			for got := 0; got < b.N; {
				n, err := c.Next()
				if err != nil {
					b.Fatalf("after %d of %d messages: %v", got, b.N, err)
				}
				if msg, ok := n.(eventloop.Message); ok {
					if len(msg.Payload) != benchPayloadSize {
						b.Fatalf("payload of %d bytes", len(msg.Payload))
					}
					got++
					if pub != nil && got%paceChunk == 0 {
						pub.credits <- struct{}{}
					}
				}
			}
			m.stop(b.N)
			if pub != nil {
				pub.stop()
			}
		})
	})
}

// Pacing of the raw publisher: it writes paceChunk messages at a time and
// lets at most paceWindow chunks be unaccounted for by the subscriber.
const (
	paceChunk  = 512
	paceWindow = 12
)

type pacedPublisher struct {
	credits chan struct{}
	quit    chan struct{}
	done    chan error
	nc      net.Conn
	b       *testing.B
}

// startPacedPublisher connects to the broker at addr and publishes n QoS
// 0 messages of benchPayloadSize bytes on topic from a goroutine.
func startPacedPublisher(b *testing.B, addr, topic string, n int) *pacedPublisher {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	p := &pacedPublisher{
		credits: make(chan struct{}, n/paceChunk+1),
		quit:    make(chan struct{}),
		done:    make(chan error, 1),
		nc:      nc,
		b:       b,
	}
	conn := blockingConn{nc}
	wr := netio.NewWriter(0)
	_ = wr.Append(&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: uniqueID("pub"), CleanStart: true, Properties: &packets.Properties{}})
	if err := wr.Flush(conn, time.Now().Add(10*time.Second)); err != nil {
		b.Fatal(err)
	}
	rd := netio.NewReader(0)
	for {
		cp, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		if cp != nil {
			if a, ok := cp.Content.(*packets.Connack); !ok || a.ReasonCode != 0 {
				b.Fatalf("publisher: %#v", cp.Content)
			}
			break
		}
		if _, err := rd.FillWait(conn, time.Now().Add(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	var chunk []byte
	for range paceChunk {
		chunk, _ = netio.AppendPacket(chunk, &packets.Publish{Topic: topic, Payload: benchPayload}, 0)
	}
	one := len(chunk) / paceChunk
	go func() {
		window := paceWindow
		for sent := 0; sent < n; {
			if window == 0 {
				select {
				case <-p.credits:
					window++
				case <-p.quit:
					p.done <- nil
					return
				}
			}
			k := min(n-sent, paceChunk)
			if _, err := nc.Write(chunk[:k*one]); err != nil {
				p.done <- err
				return
			}
			sent += k
			window--
		}
		p.done <- nil
	}()
	return p
}

func (p *pacedPublisher) stop() {
	close(p.quit)
	if err := <-p.done; err != nil {
		p.b.Errorf("publisher: %v", err)
	}
	d, _ := netio.AppendPacket(nil, &packets.Disconnect{Properties: &packets.Properties{}}, 0)
	_, _ = p.nc.Write(d)
	_ = p.nc.Close()
}

// BenchmarkIdleCPU connects with a 60 s keepalive and leaves the client
// idle, waiting inside Next, for 3 s per b.N; it reports the CPU the whole
// process used over that time as a percentage of one core (cpu-%). Run it
// with -benchtime=1x. With mochi the broker's idle CPU is included.
func BenchmarkIdleCPU(b *testing.B) {
	forEachBenchBroker(b, func(b *testing.B, br benchBroker) {
		forEachClient(b, func(b *testing.B, kind clientKind) {
			var cpu, wall time.Duration
			for range b.N {
				ctx, cancel := context.WithCancel(context.Background())
				reqs := make(chan eventloop.Request) // open, never used
				c := kind.start(b, clientConfig{url: br.url, reqs: reqs, ctx: ctx})
				timer := time.AfterFunc(idleDuration, cancel)
				cpu0, start := processCPU(), time.Now()
				n, err := c.Next() // returns when the context ends
				wall += time.Since(start)
				cpu += processCPU() - cpu0
				timer.Stop()
				cancel()
				if d, ok := n.(eventloop.Disconnected); ok {
					err = d.Err // the loop reports the end, then returns it
				}
				if !errors.Is(err, eventloop.ErrStopped) {
					b.Fatalf("Next returned %#v, %v; want ErrStopped after %v", n, err, idleDuration)
				}
				c.Close()
			}
			b.ReportMetric(100*float64(cpu)/float64(wall), "cpu-%")
			b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/idle")
		})
	})
}

// TestBaselineClient checks the baseline against the in-process sink:
// publishes at QoS 0 and 1, a subscription with a short stream, and the
// end of the run when the requests channel closes. It is quick.
func TestBaselineClient(t *testing.T) {
	s := sink.StartT(t, sink.Options{})
	reqs := make(chan eventloop.Request, 8)
	c := startBaselineClient(t, clientConfig{url: s.URL(), reqs: reqs})
	defer c.Close()
	next := func() eventloop.Notification {
		t.Helper()
		n, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	reqs <- benchPublish(0)
	reqs <- benchPublish(1)
	if p, ok := next().(eventloop.Published); !ok || p.Request.QoS != 1 || p.Err != nil {
		t.Fatalf("want Published, got %#v", p)
	}
	topic := sink.StreamTopic(1000, benchPayloadSize)
	reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic}}}
	if s, ok := next().(eventloop.Subscribed); !ok || !slices.Equal(s.ReasonCodes, []byte{0}) {
		t.Fatalf("want Subscribed, got %#v", s)
	}
	for i := range 1000 {
		if m, ok := next().(eventloop.Message); !ok || m.Topic != topic || len(m.Payload) != benchPayloadSize {
			t.Fatalf("message %d: %#v", i, m)
		}
	}
	for range 50 {
		reqs <- benchPublish(1)
		if _, ok := next().(eventloop.Published); !ok {
			t.Fatal("want Published")
		}
	}
	close(reqs)
	if n, err := c.Next(); !errors.Is(err, eventloop.ErrRequestsDone) {
		t.Fatalf("want ErrRequestsDone, got %#v, %v", n, err)
	}
	// The sink has counted every PUBLISH once its goroutines are gone.
	_ = s.Close()
	if got := s.Published(); got != 52 {
		t.Fatalf("sink received %d publishes, want 52", got)
	}
}
