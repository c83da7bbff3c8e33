package eventloop_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/faultproxy"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// envSpoolMeasure sets the number of messages of TestSpoolMeasure (the
// short form CI runs: 20,000). The figures of the journal:
//
//	MQTTLOOP_SPOOL_MEASURE=1000000 go test ./eventloop -run TestSpoolMeasure -v -timeout 30m
const envSpoolMeasure = "MQTTLOOP_SPOOL_MEASURE"

// heapPeak samples the heap's live objects until stopped and keeps the
// largest value.
type heapPeak struct {
	mu   sync.Mutex
	peak uint64
	stop chan struct{}
	done chan struct{}
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			h.mu.Lock()
			h.peak = max(h.peak, s[0].Value.Uint64())
			h.mu.Unlock()
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() uint64 {
	close(h.stop)
	<-h.done
	return h.peak
}

// rssPeak returns the process's peak resident set (VmHWM), 0 where
// /proc is not there.
func rssPeak() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestSpoolMeasure: a publisher offline for N QoS 1 messages (64-byte
// payloads), then reconnecting: the heap's peak while it spools and while
// it drains, the store's size on disk, the time to drain, and 0 lost (each
// arrives once, in order). mosquitto only (an external broker: the heap
// measured is the publisher's and the subscriber's).
func TestSpoolMeasure(t *testing.T) {
	n := 20000
	if v := os.Getenv(envSpoolMeasure); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive count", envSpoolMeasure, v)
		}
	}
	onMosquitto(t, func(t *testing.T, b brokerCase) {
		topic := uniqueID("spool/measure")
		sub := newLongClient(t, b.url, eventloop.Options{MaxQueued: 1024})
		sub.expectConnected()
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		path := filepath.Join(t.TempDir(), "spool.db")
		// fsync at each commit, unless MQTTLOOP_SPOOL_NOSYNC is set.
		fo := filestore.Options{NoSync: os.Getenv("MQTTLOOP_SPOOL_NOSYNC") != ""}
		opts := spoolOptionsWith(t, b, proxy.URL(), uniqueID("measure"), path, 1<<40, fo)
		opts.MaxQueued, opts.MaxInflight = 256, 100
		runtime.GC()
		base := startHeapPeak()
		basePeak := base.end()
		pub := newLongClient(t, proxy.URL(), opts)

		payload := bytes.Repeat([]byte("x"), 64)
		offline := startHeapPeak()
		t0 := time.Now()
		for i := range n {
			p := append(strconv.AppendInt(make([]byte, 0, 80), int64(i), 10), ':')
			pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: append(p, payload...)})
		}
		// Every request taken (the last ones are committed in the same
		// iteration).
		if !leakcheck.Poll(30*time.Minute, func() bool { return len(pub.reqs) == 0 }) {
			t.Fatalf("the publisher stopped taking requests")
		}
		spoolTime := time.Since(t0)
		offPeak := offline.end()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		disk := fi.Size()

		draining := startHeapPeak()
		t1 := time.Now()
		proxy.Refuse(false)
		var pubOut chan eventloop.Notification = pub.out
		published := 0
		for i := 0; i < n; {
			select {
			case note, ok := <-sub.out:
				if !ok {
					t.Fatalf("subscriber's run ended: %v", sub.err)
				}
				m, ok := note.(eventloop.Message)
				if !ok {
					continue
				}
				num, _, _ := strings.Cut(string(m.Payload), ":")
				if num != strconv.Itoa(i) {
					t.Fatalf("message %d is %q: lost or out of order", i, num)
				}
				i++
			case note, ok := <-pubOut:
				if !ok {
					t.Fatalf("publisher's run ended: %v", pub.err)
				}
				switch v := note.(type) {
				case eventloop.Published:
					published++
				case eventloop.Dropped, eventloop.RequestFailed:
					t.Fatalf("publisher: %#v", v)
				}
			case <-time.After(testTimeout):
				t.Fatalf("message %d did not arrive within %v", i, testTimeout)
			}
		}
		drain := time.Since(t1)
		drainPeak := draining.end()
		msg := fmt.Sprintf("(fsync %v) spool %d messages offline: %v (%.0f/s), heap peak %.1f MiB (%.1f at rest before); store %.1f MiB on disk (%.0f B/message); drain after reconnecting: %v (%.0f/s), heap peak %.1f MiB; process RSS peak %.1f MiB; 0 lost, in order",
			!fo.NoSync, n, spoolTime.Round(time.Millisecond), float64(n)/spoolTime.Seconds(), mib(offPeak), mib(basePeak),
			mib(uint64(disk)), float64(disk)/float64(n),
			drain.Round(time.Millisecond), float64(n)/drain.Seconds(), mib(drainPeak), mib(uint64(rssPeak())))
		t.Log(msg)
	})
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// newLongClient is newClient whose run lasts up to 30 minutes (a measure
// of a million messages outlasts testTimeout).
func newLongClient(t *testing.T, url string, opts eventloop.Options) *client {
	t.Helper()
	return newClientFor(t, url, opts, 30*time.Minute)
}
