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
//	         baseline   the same loop over a connection that waits the
//	                    classic way: a goroutine reading the socket with
//	                    blocking reads and handing the bytes over a channel
//	                    (readerConn); only how it waits for I/O differs
//
// MQTTLOOP_BENCH_BROKERS=sink,mosquitto restricts the brokers.
//
// BenchmarkTransport adds the transport as a dimension: ping-pong and
// pipelined QoS 1 over every transport mochi (tcp, tls, ws, quic) and
// mosquitto (tcp, unix, tls, ws, wss) serve, with both clients; the
// baseline dials each transport with its usual blocking library
// (net, crypto/tls, gorilla/websocket, quic-go). Choose brokers and
// transports with -bench, e.g. -bench 'Transport/mosquitto/(tcp|wss)/'.
//
// Metrics: ns/op is per message (per round trip for ping-pong), msgs/s (or
// rt/s) the rate, cpu-µs/msg the process's user+system CPU per message
// (getrusage RUSAGE_SELF: includes the broker when it runs in process, as
// mochi does), broker-cpu-µs/msg the broker's when it is another process,
// other-cpu-% the CPU every other process of the machine used during the
// run (a disturbed run: do not compare it), allocs/op and B/op the
// client's allocations (and an in-process broker's).
//
//	go test ./eventloop/ -run '^$' -bench . -benchtime=2s -count=1
//	go test ./eventloop/ -run '^$' -bench 'PingPong' -benchtime=2s -count=3
//	go test ./eventloop/ -run '^$' -bench 'Transport' -benchtime=2s -count=3
//	go test ./eventloop/ -run '^$' -bench 'IdleCPU' -benchtime=1x

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
	"github.com/quic-go/quic-go"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/sink"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
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
	// helperEnv selects what TestBenchHelperProcess does.
	helperEnv = "MQTTLOOP_BENCH_HELPER"
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

// benchTLSConfig returns the client TLS configuration for a benchmark
// broker URL: the test CA's for the transports that use TLS (mqtts://,
// wss://, quic://), nil otherwise.
func benchTLSConfig(url string) *tls.Config {
	for _, scheme := range []string{"mqtts://", "wss://", "quic://"} {
		if strings.HasPrefix(url, scheme) {
			return testcerts.Get().ClientConfig()
		}
	}
	return nil
}

type benchBroker struct {
	name string
	url  string
	addr string // of its plain MQTT listener (mqtt://), for helpers
	pid  int    // the broker's process when it is not this one, else 0
}

// forEachBenchBroker runs f as a sub-benchmark per broker, each started
// once for all of f's sub-benchmarks. MQTTLOOP_BENCH_BROKERS chooses
// them (comma-separated); besides the default ones, "sinkinproc" runs
// the sink in this process.
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
				br.addr, br.pid = startSinkProcess(b)
			case "sinkinproc":
				br.addr = sink.StartT(b, sink.Options{ReceiveMaximum: 65535}).Addr()
			case "mosquitto":
				m := startBenchMosquitto(b)
				br.addr, br.pid = m.Addr(), m.PID()
			case "mochi":
				br.addr = mqtttest.StartT(b, mqtttest.Options{DisableCapture: true}).Addr()
			default:
				b.Fatalf("unknown broker %q in MQTTLOOP_BENCH_BROKERS", name)
			}
			br.url = "mqtt://" + br.addr
			f(b, br)
		})
	}
}

// startBenchMosquitto starts mosquitto as the benchmarks want it, with
// extra listeners (it skips b if mosquitto is not installed).
func startBenchMosquitto(b *testing.B, listeners ...mosquitto.Listener) *mosquitto.Broker {
	b.Helper()
	if _, err := mosquitto.Binary(); err != nil {
		b.Skipf("mosquitto: %v (%s)", err, mosquitto.InstallHint)
	}
	return mosquitto.Start(b, mosquitto.Options{
		NoDelay: true,
		// No limit on messages in flight (also lifts the Receive Maximum
		// of 20 mosquitto announces by default) or queued (QoS 0 messages
		// to a slow client are otherwise dropped).
		Extra:     []string{"max_inflight_messages 0", "max_queued_messages 0"},
		Listeners: listeners,
	})
}

// benchEndpoint is one transport a broker serves, and its URL.
type benchEndpoint struct{ transport, url string }

// startTransportBroker starts broker name ("mochi" or "mosquitto") with a
// listener per transport it offers, and returns it and its endpoints,
// ordered tcp, unix, tls, ws, wss, quic.
func startTransportBroker(b *testing.B, name string) (benchBroker, []benchEndpoint) {
	b.Helper()
	certs := testcerts.Get()
	switch name {
	case "mochi":
		mb := mqtttest.StartT(b, mqtttest.Options{
			DisableCapture: true,
			TLS:            certs.ServerConfig(certs.Server, false),
			WebSocket:      true,
			QUIC:           true,
		})
		return benchBroker{name: name, url: mb.URL(), addr: mb.Addr()}, []benchEndpoint{
			{"tcp", mb.URL()},
			{"tls", mb.TLSURL()},
			{"ws", mb.WebSocketURL()},
			{"quic", mb.QUICURL()},
		}
	case "mosquitto":
		files, err := certs.WriteFiles(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		tlsFiles := &mosquitto.TLSFiles{CAFile: files.CA, CertFile: files.ServerCert, KeyFile: files.ServerKey}
		m := startBenchMosquitto(b,
			mosquitto.Listener{Unix: true},
			mosquitto.Listener{TLS: tlsFiles},
			mosquitto.Listener{WebSocket: true},
			mosquitto.Listener{WebSocket: true, TLS: tlsFiles},
		)
		return benchBroker{name: name, url: m.URL(), addr: m.Addr(), pid: m.PID()}, []benchEndpoint{
			{"tcp", m.URL()},
			{"unix", "unix://" + m.ListenerAddr(0)},
			{"tls", "mqtts://" + m.ListenerAddr(1)},
			{"ws", "ws://" + m.ListenerAddr(2) + "/mqtt"},
			{"wss", "wss://" + m.ListenerAddr(3) + "/mqtt"},
		}
	}
	b.Fatalf("no transport broker %q", name)
	return benchBroker{}, nil
}

// helperProc is a child process running this test binary's
// TestBenchHelperProcess: the sink, or a publisher. Its CPU time is not
// the benchmarked process's. Closing its stdin makes it exit.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	first string // what it printed first after its prefix
	done  chan struct{}
}

// startHelper starts a helper process in mode (MQTTLOOP_BENCH_HELPER) with
// extra environment variables, waits for its first line starting with
// prefix, and stops it at the end of tb.
func startHelper(tb testing.TB, mode, prefix string, env ...string) *helperProc {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchHelperProcess$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	drained := make(chan struct{})
	tb.Cleanup(h.stop)
	sc := bufio.NewScanner(stdout)
	found := false
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			h.first, found = rest, true
			break
		}
	}
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-drained
		_ = cmd.Wait()
		close(h.done)
	}()
	if !found {
		tb.Fatalf("helper %s: no %q line (%v)", mode, prefix, sc.Err())
	}
	return h
}

func (h *helperProc) pid() int { return h.cmd.Process.Pid }

// stop closes the helper's stdin and waits for it to exit.
func (h *helperProc) stop() {
	_ = h.stdin.Close()
	<-h.done
}

// startSinkProcess runs the sink in a helper process and returns its
// address and process id.
func startSinkProcess(b *testing.B) (string, int) {
	b.Helper()
	h := startHelper(b, "sink", "SINKADDR ")
	return h.first, h.pid()
}

// TestBenchHelperProcess is not a test: it is the child process of the
// benchmarks (startHelper), and skips unless MQTTLOOP_BENCH_HELPER is set.
//
//	sink     serve an acking sink; print "SINKADDR host:port"; exit on
//	         stdin EOF
//	publish  connect to MQTTLOOP_PUB_ADDR, print "READY", then publish
//	         MQTTLOOP_PUB_N QoS 0 messages of 100 bytes on
//	         MQTTLOOP_PUB_TOPIC, paceChunk at a time, one chunk per byte
//	         read from stdin; exit on stdin EOF
func TestBenchHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("a helper process of the benchmarks; runs only as their child")
	case "sink":
		s, err := sink.Start(sink.Options{ReceiveMaximum: 65535})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("SINKADDR %s\n", s.Addr())
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = s.Close()
	case "publish":
		n, err := strconv.Atoi(os.Getenv("MQTTLOOP_PUB_N"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pacedPublish(os.Getenv("MQTTLOOP_PUB_ADDR"), os.Getenv("MQTTLOOP_PUB_TOPIC"), n, os.Stdin, os.Stdout); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown helper mode %q", os.Getenv(helperEnv))
	}
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
	return startLoop(tb, cfg, "bench", nil)
}

// startLoop starts an event loop for cfg, dialing with dial (nil: the
// loop's own transports).
func startLoop(tb testing.TB, cfg clientConfig, name string, dial func(context.Context, string) (netio.Conn, error)) benchClient {
	tb.Helper()
	loop, err := eventloop.New(eventloop.Options{
		Servers:     []string{cfg.url},
		TLSConfig:   benchTLSConfig(cfg.url),
		ClientID:    uniqueID(name),
		CleanStart:  true,
		KeepAlive:   benchKeepAlive,
		MaxInflight: cfg.maxInflight,
		Dial:        dial,
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
		tb.Fatalf("%s: %v", name, err)
	}
	if _, ok := n.(eventloop.Connected); !ok {
		tb.Fatalf("%s: first notification %#v", name, n)
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

// The baseline is the event loop itself over a connection that waits
// for bytes the classic way: a goroutine per connection reads the socket
// with blocking reads and hands the bytes over a channel (readerConn, a
// netio.Conn given to the loop through Options.Dial). Everything else
// (codec, framing, session state, batching, keepalive) is the loop's,
// so the two clients differ only in how they wait for I/O.

// readerConn is a netio.Conn whose bytes a reader goroutine reads with
// blocking reads: ReadNow takes what the reader handed over, ReadWait
// waits on the channel (with a timer for the deadline), and the readiness
// Arm hands out is signalled by the reader after each read.
type readerConn struct {
	nc        baselineConn
	transport string

	chunks chan []byte    // read by the reader goroutine
	free   chan []byte    // buffers returned to the reader
	sig    chan os.Signal // the readiness: a value after each read
	quit   chan struct{}  // closed by Close: the reader stops
	done   chan struct{}  // closed when the reader exited
	rerr   error          // the reader's error, valid once chunks is closed
	once   sync.Once

	cur   []byte // the chunk being consumed
	buf   []byte // cur's buffer, returned to free when consumed
	err   error  // the reader's error, once seen
	timer *time.Timer
}

const (
	readerBufs    = 4
	readerBufSize = 32 << 10
)

var _ netio.Conn = (*readerConn)(nil)

func newReaderConn(bc blockingConn) *readerConn {
	c := &readerConn{
		nc:        bc.baselineConn,
		transport: bc.transport,
		chunks:    make(chan []byte, readerBufs),
		free:      make(chan []byte, readerBufs),
		sig:       make(chan os.Signal, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for range readerBufs {
		c.free <- make([]byte, readerBufSize)
	}
	go c.readLoop()
	return c
}

// readLoop is the reader goroutine.
func (c *readerConn) readLoop() {
	defer close(c.done)
	defer close(c.chunks)
	for {
		var b []byte
		select {
		case b = <-c.free:
		case <-c.quit:
			return
		}
		n, err := c.nc.Read(b[:cap(b)])
		if n > 0 {
			select {
			case c.chunks <- b[:n]:
			case <-c.quit:
				return
			}
			select {
			case c.sig <- syscall.SIGIO:
			default:
			}
		}
		if err != nil {
			c.rerr = err
			select {
			case c.sig <- syscall.SIGIO:
			default:
			}
			return
		}
	}
}

// take consumes what the reader handed over into p.
func (c *readerConn) take(p []byte) int {
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	if len(c.cur) == 0 {
		c.free <- c.buf
		c.cur, c.buf = nil, nil
	}
	return n
}

// got installs a chunk received from the reader (ok false: it ended).
func (c *readerConn) got(b []byte, ok bool) {
	if !ok {
		c.err = c.rerr
		if c.err == nil {
			c.err = net.ErrClosed
		}
		return
	}
	c.cur, c.buf = b, b[:cap(b)]
}

func (c *readerConn) ReadNow(p []byte) (int, error) {
	if len(c.cur) == 0 && c.err == nil {
		select {
		case b, ok := <-c.chunks:
			c.got(b, ok)
		default:
			return 0, nil
		}
	}
	if len(c.cur) > 0 {
		return c.take(p), nil
	}
	return 0, c.err
}

func (c *readerConn) ReadWait(p []byte, deadline time.Time) (int, error) {
	if len(c.cur) == 0 && c.err == nil {
		var expired <-chan time.Time
		if !deadline.IsZero() {
			if c.timer == nil {
				c.timer = time.NewTimer(time.Until(deadline))
			} else {
				c.timer.Reset(time.Until(deadline))
			}
			expired = c.timer.C
		}
		select {
		case b, ok := <-c.chunks:
			c.got(b, ok)
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	if len(c.cur) > 0 {
		return c.take(p), nil
	}
	return 0, c.err
}

func (c *readerConn) Arm() (netio.Readiness, error)      { return netio.Readiness{Signal: c.sig}, nil }
func (c *readerConn) Disarm()                            {}
func (c *readerConn) Write(p []byte) (int, error)        { return c.nc.Write(p) }
func (c *readerConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
func (c *readerConn) Transport() string                  { return c.transport }

// Close closes the connection and waits for the reader to exit.
func (c *readerConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.quit)
		err = c.nc.Close()
		<-c.done
	})
	return err
}

// baselineConn is the byte stream the baseline reads on its reader
// goroutine and writes on the caller's: a net.Conn (TCP, Unix socket,
// crypto/tls), a WebSocket (gorilla/websocket) or a QUIC stream
// (quic-go), all of which allow one reader and one writer at a time.
// Close ends a blocked Read.
type baselineConn interface {
	io.ReadWriteCloser
	SetWriteDeadline(t time.Time) error
}

// blockingConn adapts a baselineConn to netio.Conn for the baseline:
// ReadWait is a plain blocking Read (the runtime parks the reader
// goroutine in the netpoller), Write and SetWriteDeadline are the
// baselineConn's.
type blockingConn struct {
	baselineConn
	transport string
}

func (c blockingConn) ReadNow([]byte) (int, error) {
	return 0, errors.New("baseline: ReadNow not used")
}
func (c blockingConn) ReadWait(p []byte, _ time.Time) (int, error) { return c.Read(p) }
func (c blockingConn) Arm() (netio.Readiness, error)               { return netio.Readiness{}, nil }
func (c blockingConn) Disarm()                                     {}
func (c blockingConn) Transport() string                           { return c.transport }

// dialBaselineConn dials url the way a client with a reader goroutine
// would, with each transport's usual blocking library: net for mqtt://
// and unix://, crypto/tls for mqtts://, gorilla/websocket for ws:// and
// wss://, quic-go for quic://.
func dialBaselineConn(ctx context.Context, url string) (blockingConn, error) {
	u, err := netio.ParseServer(url)
	if err != nil {
		return blockingConn{}, err
	}
	tlsConf := benchTLSConfig(url)
	if tlsConf != nil {
		tlsConf.ServerName = u.Hostname()
	}
	ctx, cancel := context.WithTimeout(ctx, eventloop.DefaultConnectTimeout)
	defer cancel()
	var d net.Dialer
	switch u.Scheme {
	case "mqtt", "tcp", "unix":
		network, addr := "tcp", u.Host
		if u.Scheme == "unix" {
			network, addr = "unix", u.Path
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return blockingConn{}, err
		}
		return blockingConn{nc, network}, nil // Go sets TCP_NODELAY
	case "mqtts":
		nc, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return blockingConn{}, err
		}
		tc := tls.Client(nc, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return blockingConn{}, err
		}
		return blockingConn{tc, "tls"}, nil
	case "ws", "wss":
		wd := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsConf}
		ws, _, err := wd.DialContext(ctx, u.String(), nil)
		if err != nil {
			return blockingConn{}, err
		}
		return blockingConn{&wsClientConn{ws: ws}, u.Scheme}, nil
	case "quic":
		tlsConf.NextProtos = []string{netio.QUICALPN}
		qc, err := quic.DialAddr(ctx, u.Host, tlsConf, &quic.Config{KeepAlivePeriod: benchKeepAlive / 2})
		if err != nil {
			return blockingConn{}, err
		}
		st, err := qc.OpenStreamSync(ctx)
		if err != nil {
			_ = qc.CloseWithError(0, "")
			return blockingConn{}, err
		}
		return blockingConn{quicStreamConn{st, qc}, "quic"}, nil
	}
	return blockingConn{}, fmt.Errorf("baseline: no transport for %s", url)
}

// wsClientConn is a gorilla/websocket connection as a byte stream: Read
// returns the payloads of binary messages one after the other, Write
// sends p as one binary message (the baseline writes a flushed batch per
// Write, as the loop does).
type wsClientConn struct {
	ws *websocket.Conn
	r  io.Reader // the message being read
}

func (c *wsClientConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("baseline: websocket message is not binary")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsClientConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsClientConn) Close() error                       { return c.ws.Close() }

// quicStreamConn is the baseline's QUIC stream; Close closes the whole
// connection (closing a stream only ends its sending side).
type quicStreamConn struct {
	*quic.Stream
	conn *quic.Conn
}

func (c quicStreamConn) Close() error { return c.conn.CloseWithError(0, "") }

func startBaselineClient(tb testing.TB, cfg clientConfig) benchClient {
	tb.Helper()
	return startLoop(tb, cfg, "baseline", func(ctx context.Context, server string) (netio.Conn, error) {
		bc, err := dialBaselineConn(ctx, server)
		if err != nil {
			return nil, err
		}
		return newReaderConn(bc), nil
	})
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

// machineBusy returns the CPU time all processes of the machine spent
// outside idle (/proc/stat; 0 where there is none), and the number of
// CPUs.
func machineBusy() (time.Duration, int) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	var busy time.Duration
	cpus := 0
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if i > 0 {
			cpus++
			continue
		}
		// user nice system idle iowait irq softirq steal ...
		for j, v := range f[1:] {
			if j == 3 || j == 4 || j > 6 {
				continue // idle, iowait, steal, guest
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			busy += time.Duration(n) * time.Second / clockTicks
		}
	}
	return busy, cpus
}

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// pidCPU returns the user+system CPU time of process pid (/proc; 0 where
// there is none).
func pidCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name in parentheses may contain spaces: fields are
	// counted from the closing parenthesis (utime and stime are fields 14
	// and 15, so the 12th and 13th after it).
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks
}

// meter measures a benchmark's messages from the moment it is started:
// the rate, the process's CPU per message, the broker's CPU per message
// when it is another process (broker-cpu-µs/msg), and, as a check that
// the run was not disturbed, the CPU every other process of the machine
// used, in percent of the machine (other-cpu-%). Figures from a run with
// a high other-cpu-% are not comparable.
type meter struct {
	b         *testing.B
	rate      string
	brokerPID int
	helpers   []int // processes whose CPU is not "other"
	cpu0      time.Duration
	broker0   time.Duration
	helpers0  time.Duration
	busy0     time.Duration
	wall0     time.Time
}

// startMeter resets the benchmark timer and starts measuring CPU.
// The CPU time of the broker and of the processes helpers is not counted
// in other-cpu-%.
func startMeter(b *testing.B, br benchBroker, rateUnit string, helpers ...int) *meter {
	b.ReportAllocs()
	m := &meter{b: b, rate: rateUnit, brokerPID: br.pid, helpers: helpers}
	m.busy0, _ = machineBusy()
	m.broker0 = pidCPU(br.pid)
	m.helpers0 = m.helpersCPU()
	b.ResetTimer()
	m.wall0 = time.Now()
	m.cpu0 = processCPU()
	return m
}

func (m *meter) helpersCPU() time.Duration {
	var t time.Duration
	for _, pid := range m.helpers {
		if pid != m.brokerPID {
			t += pidCPU(pid)
		}
	}
	return t
}

// stop stops the timer and reports msgs messages.
func (m *meter) stop(msgs int) {
	cpu := processCPU() - m.cpu0
	m.b.StopTimer()
	wall := time.Since(m.wall0)
	broker := pidCPU(m.brokerPID) - m.broker0
	helpers := m.helpersCPU() - m.helpers0
	busy, cpus := machineBusy()
	busy -= m.busy0
	if msgs <= 0 {
		return
	}
	m.b.ReportMetric(float64(msgs)/m.b.Elapsed().Seconds(), m.rate)
	m.b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(msgs), "cpu-µs/msg")
	if m.brokerPID != 0 {
		m.b.ReportMetric(float64(broker)/float64(time.Microsecond)/float64(msgs), "broker-cpu-µs/msg")
	}
	if cpus > 0 && wall > 100*time.Millisecond {
		// Tick granularity makes this approximate (±10 ms per process).
		other := max(0, busy-cpu-broker-helpers)
		m.b.ReportMetric(100*float64(other)/float64(wall)/float64(cpus), "other-cpu-%")
	}
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
			pingPongQoS1(b, br, kind)
		})
	})
}

func pingPongQoS1(b *testing.B, br benchBroker, kind clientKind) {
	reqs := make(chan eventloop.Request, 1)
	c := kind.start(b, clientConfig{url: br.url, reqs: reqs, maxInflight: benchInflight})
	defer c.Close()
	req := benchPublish(1)
	m := startMeter(b, br, "rt/s")
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
			pipelined(b, br, kind, qos)
		})
	})
}

func pipelined(b *testing.B, br benchBroker, kind clientKind, qos byte) {
	// The producer starts once the client is connected, so that
	// connecting is not measured.
	reqs := make(chan eventloop.Request, benchQueue)
	c := kind.start(b, clientConfig{url: br.url, reqs: reqs, maxInflight: benchInflight})
	defer c.Close()
	m := startMeter(b, br, "msgs/s")
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
}

// BenchmarkTransport runs ping-pong QoS 1 (as BenchmarkPingPongQoS1) and
// pipelined QoS 1 (as BenchmarkPublishQoS1) over every transport of the
// embedded mochi broker (tcp, tls, ws, quic) and of mosquitto (tcp, unix,
// tls, ws, wss), with the loop and the baseline. Each broker serves all
// its transports from one process, started once:
//
//	BenchmarkTransport/{mochi,mosquitto}/TRANSPORT/{PingPongQoS1,PublishQoS1}/{loop,baseline}
//
// mochi runs in process, so its cpu-µs/msg includes the broker's side of
// the transport (TLS, WebSocket framing, quic-go's goroutines); mosquitto's
// is broker-cpu-µs/msg.
//
//	go test ./eventloop/ -run '^$' -bench 'Transport' -benchtime=2s -count=3
func BenchmarkTransport(b *testing.B) {
	for _, name := range []string{"mochi", "mosquitto"} {
		b.Run(name, func(b *testing.B) {
			br, endpoints := startTransportBroker(b, name)
			for _, ep := range endpoints {
				br := br
				br.url = ep.url
				b.Run(ep.transport, func(b *testing.B) {
					b.Run("PingPongQoS1", func(b *testing.B) {
						forEachClient(b, func(b *testing.B, kind clientKind) { pingPongQoS1(b, br, kind) })
					})
					b.Run("PublishQoS1", func(b *testing.B) {
						forEachClient(b, func(b *testing.B, kind clientKind) { pipelined(b, br, kind, 1) })
					})
				})
			}
		})
	}
}

// BenchmarkReceiveQoS0 receives b.N QoS 0 messages of 100 bytes. The sink
// streams them after the SUBACK; mosquitto and mochi get them from a
// publisher in a helper process (so that its CPU is not counted), paced
// by the subscriber so that at most paceWindow×paceChunk messages are on
// their way (mochi drops QoS 0 messages beyond 8192 pending per client).
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
			var pub *helperProc
			pids := []int{br.pid}
			if !strings.HasPrefix(br.name, "sink") {
				pub = startHelper(b, "publish", "READY", "MQTTLOOP_PUB_ADDR="+br.addr,
					"MQTTLOOP_PUB_TOPIC="+topic, "MQTTLOOP_PUB_N="+strconv.Itoa(b.N))
				pids = append(pids, pub.pid())
			}
			m := startMeter(b, br, "msgs/s", pids...)
			credit := []byte{0}
			if pub != nil {
				if _, err := pub.stdin.Write(make([]byte, paceWindow)); err != nil {
					b.Fatal(err)
				}
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
						if _, err := pub.stdin.Write(credit); err != nil {
							b.Fatal(err)
						}
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

// Pacing of the publisher: it writes paceChunk messages at a time and
// lets at most paceWindow chunks be unaccounted for by the subscriber
// (mochi drops QoS 0 messages beyond 8192 pending for a client).
const (
	paceChunk  = 512
	paceWindow = 12
)

// pacedPublish connects to the broker at addr, says READY on out, and
// publishes n QoS 0 messages of benchPayloadSize bytes on topic, a chunk
// of paceChunk messages for each byte read from credits. It returns when
// credits ends.
func pacedPublish(addr, topic string, n int, credits io.Reader, out io.Writer) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	conn := blockingConn{nc, "tcp"}
	wr := wire.NewWriter(0)
	_ = wr.Append(&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: uniqueID("pub"), CleanStart: true, Properties: &packets.Properties{}})
	if err := wr.Flush(conn, time.Now().Add(10*time.Second)); err != nil {
		return err
	}
	rd := wire.NewReader(0)
	for {
		cp, err := rd.Next()
		if err != nil {
			return err
		}
		if cp != nil {
			if a, ok := cp.Content.(*packets.Connack); !ok || a.ReasonCode != 0 {
				return fmt.Errorf("publisher: %#v", cp.Content)
			}
			break
		}
		if _, err := rd.FillWait(conn, time.Now().Add(10*time.Second)); err != nil {
			return err
		}
	}
	var chunk []byte
	for range paceChunk {
		chunk, _ = wire.AppendPacket(chunk, &packets.Publish{Topic: topic, Payload: benchPayload}, 0)
	}
	one := len(chunk) / paceChunk
	if _, err := fmt.Fprintln(out, "READY"); err != nil {
		return err
	}
	buf := make([]byte, 64)
	sent := 0
	for {
		k, err := credits.Read(buf)
		for range k {
			if sent == n {
				break
			}
			c := min(n-sent, paceChunk)
			if _, err := nc.Write(chunk[:c*one]); err != nil {
				return err
			}
			sent += c
		}
		if err != nil {
			break // EOF: the benchmark is done
		}
	}
	d, _ := wire.AppendPacket(nil, &packets.Disconnect{Properties: &packets.Properties{}}, 0)
	_, _ = nc.Write(d)
	return nil
}

// BenchmarkIdleCPU connects with a 60 s keepalive and leaves the client
// idle, waiting inside Next, for 3 s; it reports the CPU the whole process
// used over that time as a percentage of one core (cpu-%). It ignores b.N
// (one 3 s measurement per call; ns/op is meaningless): run it with
// -benchtime=1x. With mochi the broker's idle CPU is included.
func BenchmarkIdleCPU(b *testing.B) {
	forEachBenchBroker(b, func(b *testing.B, br benchBroker) {
		forEachClient(b, func(b *testing.B, kind clientKind) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reqs := make(chan eventloop.Request) // open, never used
			c := kind.start(b, clientConfig{url: br.url, reqs: reqs, ctx: ctx})
			defer c.Close()
			timer := time.AfterFunc(idleDuration, cancel)
			defer timer.Stop()
			cpu0, start := processCPU(), time.Now()
			n, err := c.Next() // returns when the context ends
			wall, cpu := time.Since(start), processCPU()-cpu0
			if d, ok := n.(eventloop.Disconnected); ok {
				err = d.Err // the loop reports the end, then returns it
			}
			if !errors.Is(err, eventloop.ErrStopped) {
				b.Fatalf("Next returned %#v, %v; want ErrStopped after %v", n, err, idleDuration)
			}
			b.ReportMetric(100*float64(cpu)/float64(wall), "cpu-%")
			b.ReportMetric(float64(cpu)/float64(time.Microsecond), "cpu-µs/3s")
		})
	})
}

// TestBaselineClient checks the baseline (the loop over readerConn)
// against the in-process sink: publishes at QoS 0 and 1, a subscription
// with a short stream, and the end of the run when the requests channel
// closes. It is quick.
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
	if d, ok := next().(eventloop.Disconnected); !ok || !errors.Is(d.Err, eventloop.ErrRequestsDone) {
		t.Fatalf("want Disconnected with ErrRequestsDone, got %#v", d)
	}
	if n, err := c.Next(); !errors.Is(err, eventloop.ErrRequestsDone) {
		t.Fatalf("want ErrRequestsDone, got %#v, %v", n, err)
	}
	// The sink has counted every PUBLISH once its goroutines are gone.
	_ = s.Close()
	if got := s.Published(); got != 52 {
		t.Fatalf("sink received %d publishes, want 52", got)
	}
}
