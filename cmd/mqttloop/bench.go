package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

const benchExamples = `  mqttloop bench                                  # 10 publishers -> 10 subscribers, QoS 0, 100 messages each
  mqttloop bench --pubs 500 --subs 500 -q 1 --count 50 --rate 10 --size 256
  mqttloop bench --pubs 5000 --subs 0 --count 1 --hold 30s    # hold 5,000 connections for 30 s
  mqttloop bench -L quic://localhost:14567 --cafile ca.pem --pubs 100 -q 2
  mqttloop bench --pubs 1000 --subs 1000 -q 1 --json > result.json
`

// benchStamp is the bytes of a payload that carry the send time and a
// sequence number.
const benchStamp = 16

// benchResult is what bench reports (--json prints it as is).
type benchResult struct {
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	QoS         int     `json:"qos"`
	PayloadSize int     `json:"payload_bytes"`
	RatePerPub  float64 `json:"rate_per_publisher"`

	Connected      int     `json:"connected"`
	ConnectFailed  int     `json:"connect_failed"`
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectMs      pctls   `json:"connect_ms"`

	Sent           uint64  `json:"sent"`
	Acked          uint64  `json:"acked"`
	Received       uint64  `json:"received"`
	Failed         uint64  `json:"failed"`
	Lost           int64   `json:"lost"`
	Seconds        float64 `json:"seconds"`
	SentPerSec     float64 `json:"sent_per_second"`
	ReceivedPerSec float64 `json:"received_per_second"`
	LatencyMs      pctls   `json:"latency_ms"`

	CPUSeconds float64  `json:"cpu_seconds"`
	CPUPercent float64  `json:"cpu_percent_of_one_core"`
	Cores      int      `json:"cores"`
	Load1      string   `json:"load_average,omitempty"`
	Goroutines int      `json:"goroutines_peak"`
	HeapMiB    float64  `json:"heap_mib"`
	Errors     []string `json:"errors,omitempty"`
}

type pctls struct {
	Min, Mean, P50, P90, P99, P999, Max float64
}

func pctlsOf(h *histogram) pctls {
	f := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return pctls{f(h.min), f(h.mean()), f(h.quantile(0.5)), f(h.quantile(0.9)), f(h.quantile(0.99)), f(h.quantile(0.999)), f(h.max)}
}

// benchConn is one connection of the benchmark.
type benchConn struct {
	loop     *eventloop.EventLoop
	requests chan eventloop.Request
	connect  time.Duration
	err      error
}

// benchState is shared by the connections.
type benchState struct {
	sent, acked, received, failed atomic.Uint64
	mu                            sync.Mutex
	latency                       histogram
	errs                          []string
}

func (s *benchState) errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "bench"
	fs := newFlagSet(name, `Benchmarks a broker from this process: --pubs publishers and --subs subscribers, each
its own connection on its own loop. Publisher i publishes --count messages to
<topic>/i at --rate per second (0: as fast as the window allows); subscriber j
subscribes to the topics of publishers j, j+subs, ...; so every message is
received once. It reports connect times, messages per second, CPU, end-to-end
latency percentiles (send time in the payload) with a histogram, or JSON; a live
progress line on a terminal. Exit 1 if a connection failed or, at QoS 1 and 2,
if a message was not received.`, benchExamples, stderr)
	var cf connFlags
	cf.register(fs)
	pubs := fs.Int("pubs", 10, "publisher `connections`")
	subs := fs.Int("subs", -1, "subscriber `connections` (default: as many as publishers; 0: none)")
	qos := fs.Int("q", 0, "`QoS`")
	size := fs.Int("size", 64, "payload `bytes` (at least 16: send time and sequence)")
	count := fs.Int("count", 100, "messages per publisher")
	rate := fs.Float64("rate", 0, "messages per `second` per publisher (0: unlimited)")
	hold := fs.Duration("hold", 0, "keep the connections open this `long` after the messages (to measure how many a process holds)")
	concurrency := fs.Int("connect-concurrency", 100, "connections being set up at once")
	topic := fs.String("topic", "", "topic `prefix` (default mqttloop/bench/<random>)")
	drain := fs.Duration("drain", 10*time.Second, "after the last publish, end when nothing more arrived (or was acknowledged) for this `long`")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if *subs < 0 {
		*subs = *pubs
	}
	switch {
	case *pubs < 0 || (*pubs == 0 && *subs == 0):
		return usageErr(stderr, name, "--pubs %d --subs %d: want some connections", *pubs, *subs)
	case *qos < 0 || *qos > 2:
		return usageErr(stderr, name, "-q %d: want 0, 1 or 2", *qos)
	case *size < benchStamp:
		return usageErr(stderr, name, "--size %d: at least %d", *size, benchStamp)
	case *count < 0 || *rate < 0 || *concurrency < 1:
		return usageErr(stderr, name, "--count, --rate and --connect-concurrency must be positive")
	case cf.persistent || cf.sessionExpiry > 0:
		return usageErr(stderr, name, "-c and -x: bench uses clean sessions")
	}
	base, err := cf.options(name, stderr)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	if *topic == "" {
		var r [4]byte
		_, _ = rand.Read(r[:])
		*topic = "mqttloop/bench/" + hex.EncodeToString(r[:])
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	idPrefix := fmt.Sprintf("mqttloop-bench-%x", r)

	res := benchResult{Publishers: *pubs, Subscribers: *subs, QoS: *qos, PayloadSize: *size, RatePerPub: *rate,
		Cores: runtime.NumCPU(), Load1: loadAverage()}
	st := &benchState{}
	progress := isTerminal(stderr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Connect everything, --connect-concurrency at a time. Every loop runs on
	// a goroutine of its own until its run ends.
	total := *pubs + *subs
	expected := uint64(*pubs) * uint64(*count)
	b := &bench{st: st, ctx: ctx, qos: byte(*qos), size: *size, count: *count, rate: *rate, topic: *topic,
		pubs: *pubs, subs: *subs, hold: *hold > 0,
		connected: make(chan int, total), start: make(chan struct{}), stop: make(chan struct{}),
		sem: make(chan struct{}, *concurrency), conns: make([]*benchConn, total), subsLeft: make([]atomic.Int64, *subs)}
	for i := 0; i < *pubs && *subs > 0; i++ {
		b.subsLeft[i%*subs].Add(int64(*count))
	}
	began := time.Now()
	cpu0 := cpuTime()
	var peakG int
	sample := func() { peakG = max(peakG, runtime.NumGoroutine()) }
	go func() {
		for i := 0; i < total; i++ {
			o := base
			o.ClientID = fmt.Sprintf("%s-%d", idPrefix, i)
			o.CleanStart, o.SessionExpiry = true, 0
			select {
			case b.sem <- struct{}{}:
			case <-ctx.Done():
				for ; i < total; i++ {
					b.connected <- -1 - i
				}
				return
			}
			b.wg.Add(1)
			if i < *pubs {
				b.pubsRunning.Add(1)
			}
			go b.conn(i, o)
		}
	}()

	var connHist histogram
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	up, failed, ticks := 0, 0, 0
	for up+failed < total {
		select {
		case i := <-b.connected:
			if i >= 0 {
				up++
				connHist.record(b.conns[i].connect)
			} else {
				failed++
				if c := b.conns[-1-i]; c != nil && c.err != nil {
					st.errorf("connection %d: %v", -1-i, c.err)
				}
			}
		case <-tick.C:
			sample()
			if ticks++; progress && ticks%10 == 0 {
				fmt.Fprintf(stderr, "\rconnecting: %d/%d up, %d failed   ", up, total, failed)
			}
		}
	}
	res.Connected, res.ConnectFailed = up, failed
	res.ConnectSeconds = time.Since(began).Seconds()
	res.ConnectMs = pctlsOf(&connHist)

	// Publish, and wait until every message arrived (and, at QoS 1 and 2,
	// was acknowledged), or --drain after the last publish.
	pubStart := time.Now()
	b.last.Store(pubStart.UnixNano())
	close(b.start)
	allReceived := func() bool {
		for j := range b.subsLeft {
			if b.subsLeft[j].Load() > 0 {
				return false
			}
		}
		return true
	}
	var drainTimer <-chan time.Time
	lastSent, progressMark := uint64(0), uint64(0)
	for done := false; !done; {
		select {
		case <-drainTimer:
			done = true
		case <-tick.C:
			sample()
			if ticks++; progress && ticks%10 == 0 {
				s := st.sent.Load()
				fmt.Fprintf(stderr, "\rsent %d  received %d  %.0f msgs/s   ", s, st.received.Load(), float64(s-lastSent)*2)
				lastSent = s
			}
		case <-ctx.Done():
			done = true
		}
		sent := st.sent.Load()
		if drainTimer == nil && (sent == expected || b.pubsRunning.Load() == 0) {
			drainTimer = time.After(*drain)
		}
		if got := st.received.Load() + st.acked.Load(); got != progressMark {
			// Still arriving: the drain counts from the last progress.
			progressMark = got
			if drainTimer != nil {
				drainTimer = time.After(*drain)
			}
		}
		if sent == expected && (*qos == 0 || st.acked.Load()+st.failed.Load() == sent) &&
			(*subs == 0 || allReceived() || *qos == 0 && st.received.Load() >= sent) {
			done = true
		}
	}
	pubElapsed := time.Duration(b.last.Load() - pubStart.UnixNano())
	if *hold > 0 && ctx.Err() == nil {
		if progress {
			fmt.Fprintf(stderr, "\rholding %d connections for %v   ", up, *hold)
		}
		select {
		case <-time.After(*hold):
		case <-ctx.Done():
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMiB = float64(ms.HeapInuse) / (1 << 20)
	sample()
	close(b.stop)
	b.wg.Wait()
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	cpu := cpuTime() - cpu0
	elapsed := time.Since(began)

	res.Sent, res.Acked, res.Received, res.Failed = st.sent.Load(), st.acked.Load(), st.received.Load(), st.failed.Load()
	if *subs > 0 {
		res.Lost = int64(res.Sent) - int64(res.Received)
	}
	res.Seconds = pubElapsed.Seconds()
	if res.Seconds > 0 {
		res.SentPerSec = float64(res.Sent) / res.Seconds
		res.ReceivedPerSec = float64(res.Received) / res.Seconds
	}
	res.LatencyMs = pctlsOf(&st.latency)
	res.CPUSeconds = cpu.Seconds()
	res.CPUPercent = 100 * cpu.Seconds() / elapsed.Seconds()
	res.Goroutines = peakG
	res.Errors = st.errs

	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printBench(stdout, &res, &st.latency)
	}
	switch {
	case ctx.Err() != nil:
		return exitError
	case res.ConnectFailed > 0:
		return exitError
	case *qos > 0 && (res.Failed > 0 || res.Acked != res.Sent || (*subs > 0 && res.Received != res.Sent)):
		return exitError
	}
	return exitOK
}

// bench runs the connections of a benchmark.
type bench struct {
	st          *benchState
	ctx         context.Context
	qos         byte
	size, count int
	rate        float64
	topic       string
	pubs, subs  int
	hold        bool
	connected   chan int      // index, or -1-index on failure
	start, stop chan struct{} // closed to publish; closed to end
	sem         chan struct{}
	conns       []*benchConn
	subsLeft    []atomic.Int64 // messages each subscriber still expects
	last        atomic.Int64   // UnixNano of the last message received or acknowledged
	wg          sync.WaitGroup
	pubsRunning atomic.Int64
}

// conn runs connection i: publisher i, or subscriber i-pubs.
func (b *bench) conn(i int, o eventloop.Options) {
	defer b.wg.Done()
	isPub, j := i < b.pubs, i-b.pubs
	if isPub {
		defer b.pubsRunning.Add(-1)
	}
	c := &benchConn{requests: make(chan eventloop.Request, 64)}
	b.conns[i] = c
	st := b.st
	ready := false
	signal := func(ok bool) {
		if ready {
			return
		}
		ready = true
		<-b.sem
		if ok {
			b.connected <- i
		} else {
			b.connected <- -1 - i
		}
	}
	// A subscriber's requests come before Run and from the goroutine
	// below, which wakes the loop: it may wait for the broker in the
	// poller. A publisher's come from feed, without Wake.
	o.WakeAfterSend = !isPub
	loop, err := eventloop.New(o)
	if err != nil {
		c.err = err
		signal(false)
		return
	}
	hasFilters := false
	if !isPub {
		var filters []eventloop.Filter
		for p := j; p < b.pubs; p += b.subs {
			filters = append(filters, eventloop.Filter{Topic: fmt.Sprintf("%s/%d", b.topic, p), QoS: b.qos})
		}
		if hasFilters = len(filters) > 0; hasFilters {
			c.requests <- eventloop.Subscribe{Filters: filters}
		}
	}
	ended := make(chan struct{})
	defer close(ended)
	var lat *histogram // allocated at the first message: 8 KiB
	t0 := time.Now()
	events := loop.Run(b.ctx, c.requests)
	for {
		ev, err := events.Next()
		if err != nil {
			if !ready {
				c.err = err
			} else if !errors.Is(err, eventloop.ErrRequestsDone) && !errors.Is(err, eventloop.ErrDisconnected) && !errors.Is(err, eventloop.ErrStopped) {
				st.errorf("connection %d: %v", i, err)
			}
			signal(false)
			break
		}
		switch ev := ev.(type) {
		case eventloop.Connected:
			c.connect = time.Since(t0)
			if isPub {
				go b.feed(c.requests, ended, b.topic+"/"+fmt.Sprint(i))
			} else {
				go func() {
					select {
					case <-b.stop:
						c.requests <- eventloop.Disconnect{}
						loop.Wake()
					case <-ended:
					}
				}()
			}
			if !hasFilters {
				signal(true)
			}
		case eventloop.Subscribed:
			if err := ev.Err(); err != nil {
				c.err = err
				signal(false)
				continue
			}
			signal(true)
		case eventloop.Message:
			if len(ev.Payload) >= benchStamp {
				if lat == nil {
					lat = new(histogram)
				}
				lat.record(time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(ev.Payload))))
			}
			b.last.Store(time.Now().UnixNano())
			st.received.Add(1)
			b.subsLeft[j].Add(-1)
		case eventloop.Published:
			b.last.Store(time.Now().UnixNano())
			if ev.Err != nil {
				st.failed.Add(1)
				st.errorf("publish refused: %v", ev.Err)
			} else {
				st.acked.Add(1)
			}
		case eventloop.RequestFailed:
			st.failed.Add(1)
			st.errorf("request failed: %v", ev.Err)
		}
	}
	if lat != nil {
		st.mu.Lock()
		st.latency.merge(lat)
		st.mu.Unlock()
	}
}

// feed publishes count messages on requests once start is closed, at rate
// per second (0: as fast as the loop takes them), then closes requests
// (the publisher's run ends when all are acknowledged); with hold, only
// once stop is closed, so that the connection stays open. It returns when
// the connection's run ended.
func (b *bench) feed(requests chan<- eventloop.Request, ended <-chan struct{}, topic string) {
	select {
	case <-b.start:
	case <-ended:
		return
	}
	var tick <-chan time.Time
	if b.rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / b.rate))
		defer t.Stop()
		tick = t.C
	}
	for n := 0; n < b.count; n++ {
		if tick != nil {
			select {
			case <-tick:
			case <-ended:
				return
			}
		}
		p := make([]byte, b.size)
		binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(p[8:], uint64(n))
		select {
		case requests <- eventloop.Publish{Topic: topic, QoS: b.qos, Payload: p}:
			b.st.sent.Add(1)
		case <-ended:
			return
		}
	}
	if b.hold {
		select {
		case <-b.stop:
		case <-ended:
			return
		}
	}
	close(requests)
}

func printBench(w io.Writer, r *benchResult, lat *histogram) {
	fmt.Fprintf(w, "connections  %d up, %d failed (%d publishers, %d subscribers) in %.2f s\n", r.Connected, r.ConnectFailed, r.Publishers, r.Subscribers, r.ConnectSeconds)
	c := r.ConnectMs
	fmt.Fprintf(w, "connect      p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", c.P50, c.P90, c.P99, c.Max)
	fmt.Fprintf(w, "messages     %d sent, %d acknowledged, %d received, %d refused (QoS %d, %d-byte payload)\n", r.Sent, r.Acked, r.Received, r.Failed, r.QoS, r.PayloadSize)
	fmt.Fprintf(w, "throughput   %.0f msgs/s sent, %.0f msgs/s received over %.2f s\n", r.SentPerSec, r.ReceivedPerSec, r.Seconds)
	fmt.Fprintf(w, "cpu          %.2f s (%.0f%% of one core; %d cores, load %s); peak goroutines %d, heap %.1f MiB\n", r.CPUSeconds, r.CPUPercent, r.Cores, r.Load1, r.Goroutines, r.HeapMiB)
	l := r.LatencyMs
	fmt.Fprintf(w, "\nlatency      min      p50      p90      p99      p99.9    max      mean\n")
	fmt.Fprintf(w, "  (ms)       %-8.2f %-8.2f %-8.2f %-8.2f %-8.2f %-8.2f %-8.2f\n", l.Min, l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if lat.n > 0 {
		fmt.Fprintln(w, "\nlatency histogram")
		lat.draw(w, 40)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}

// cpuTime is the user and system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage is the 1, 5 and 15 minute load average, where the system
// tells it (Linux).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) == 0 {
		return ""
	}
	var a, b5, c string
	fmt.Sscan(string(b), &a, &b5, &c)
	return a + " " + b5 + " " + c
}

// isTerminal: w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
