// Package scenario holds the peer benchmark's scenarios, one file per
// family (fanin.go, sparse.go, idle.go, receive.go, publish.go). Each
// measurement runs the client under test alone in a child process (this
// program re-executed with "child"), so that its CPU time, resident memory
// and Go heap are its own; the parent process starts the broker, feeds
// the subscribers with a raw publisher (internal/rawpub) and collects the
// results.
package scenario

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/clients"
	"github.com/mqttloop/mqttloop/bench/internal/measure"
)

// Payload is what every message carries: 100 bytes.
var Payload = func() []byte {
	p := make([]byte, 100)
	for i := range p {
		p[i] = byte('A' + i%26)
	}
	return p
}()

// ChildParams is what the parent tells a child (as JSON in its
// arguments).
type ChildParams struct {
	Mode     string // "subscribe" or "publish"
	Client   clients.Kind
	URL      string
	Loops    int    // subscribers in the process (subscribe)
	Topic    string // subscribers use Topic+"/"+i; publishers Topic
	QoS      byte
	N        int    // messages to publish (publish)
	Inflight int    // publish window (publish); goroutines (awaited)
	Publish  string // "pipelined", "roundtrip" or "awaited" (publish)
}

// Result is what a child reports.
type Result struct {
	Msgs        int64
	Wall        time.Duration // START to the last message (or the end of the work)
	CPU         time.Duration // the process's user+system time over Wall
	MemBefore   measure.Mem   // before connecting
	MemAfter    measure.Mem   // after connecting and settling (subscribe)
	Loops       int
	RTTs        []time.Duration `json:",omitempty"`
	ConnectWall time.Duration
}

// RunChild is the child's side: it reads commands on in and writes
// "READY" and "RESULT <json>" lines on out.
func RunChild(p ChildParams, in io.Reader, out io.Writer) error {
	measure.RaiseFileLimit(uint64(p.Loops)*2 + 1024)
	sc := bufio.NewScanner(in)
	readCmd := func() (string, error) {
		if !sc.Scan() {
			if sc.Err() != nil {
				return "", sc.Err()
			}
			return "", io.EOF
		}
		return strings.TrimSpace(sc.Text()), nil
	}
	var res Result
	switch p.Mode {
	case "subscribe":
		res.MemBefore = measure.Memory()
		var count atomic.Int64
		var lastNano atomic.Int64
		onMsg := func() {
			count.Add(1)
			lastNano.Store(time.Now().UnixNano())
		}
		t0 := time.Now()
		subs, err := connectMany(p, onMsg)
		if err != nil {
			return err
		}
		res.ConnectWall = time.Since(t0)
		res.Loops = len(subs)
		fmt.Fprintln(out, "READY")
		if cmd, err := readCmd(); err != nil || cmd != "START" {
			return fmt.Errorf("child: want START, got %q, %v", cmd, err)
		}
		res.MemAfter = measure.Memory()
		count.Store(0)
		start := time.Now()
		cpu0 := measure.SelfCPU()
		fmt.Fprintln(out, "STARTED")
		cmd, err := readCmd()
		if err != nil {
			return err
		}
		want, err := strconv.ParseInt(strings.TrimPrefix(cmd, "STOP "), 10, 64)
		if err != nil {
			return fmt.Errorf("child: want STOP n, got %q", cmd)
		}
		for deadline := time.Now().Add(30 * time.Second); count.Load() < want && time.Now().Before(deadline); {
			time.Sleep(200 * time.Microsecond)
		}
		cpu1 := measure.SelfCPU()
		end := time.Now()
		if want > 0 {
			end = time.Unix(0, lastNano.Load())
		}
		res.Msgs, res.Wall, res.CPU = count.Load(), end.Sub(start), cpu1-cpu0
		if want == 0 { // idle: report memory at the end too
			res.MemAfter = measure.Memory()
		}
		emit(out, res)
		closeAll(subs)
		return nil
	case "publish":
		fmt.Fprintln(out, "READY")
		if cmd, err := readCmd(); err != nil || cmd != "START" {
			return fmt.Errorf("child: want START, got %q, %v", cmd, err)
		}
		start := time.Now()
		cpu0 := measure.SelfCPU()
		var err error
		switch p.Publish {
		case "roundtrip":
			res.RTTs, err = clients.RoundTrips(p.Client, p.URL, clients.ID(string(p.Client)), p.Topic, Payload, p.N)
		case "awaited":
			err = clients.Awaited(p.Client, p.URL, clients.ID(string(p.Client)), p.Topic, Payload, p.QoS, p.N, p.Inflight)
		default:
			err = clients.Publish(p.Client, p.URL, clients.ID(string(p.Client)), p.Topic, Payload, p.QoS, p.N, p.Inflight)
		}
		if err != nil {
			return err
		}
		res.CPU, res.Wall, res.Msgs = measure.SelfCPU()-cpu0, time.Since(start), int64(p.N)
		emit(out, res)
		return nil
	}
	return fmt.Errorf("child: unknown mode %q", p.Mode)
}

func emit(out io.Writer, r Result) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(out, "RESULT %s\n", b)
}

// connectMany connects p.Loops subscribers, 64 at a time.
func connectMany(p ChildParams, onMsg func()) ([]clients.Subscriber, error) {
	subs := make([]clients.Subscriber, p.Loops)
	errs := make([]error, p.Loops)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range p.Loops {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			subs[i], errs[i] = clients.Subscribe(p.Client, p.URL, clients.ID(string(p.Client)), p.Topic+"/"+strconv.Itoa(i), p.QoS, onMsg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			closeAll(subs)
			return nil, fmt.Errorf("subscriber %d of %d: %w", i, p.Loops, err)
		}
	}
	return subs, nil
}

func closeAll(subs []clients.Subscriber) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, s := range subs {
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.Close()
		}()
	}
	wg.Wait()
}
