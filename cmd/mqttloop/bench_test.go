package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
)

func benchJSON(t *testing.T, want int, args ...string) benchResult {
	t.Helper()
	r := mustRun(t, want, append([]string{"bench", "--json"}, args...)...)
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	return res
}

// TestBench1000: 1,000 connections against the embedded broker complete,
// and the numbers add up: at QoS 1 every message sent is acknowledged and
// received once, with a latency for each.
func TestBench1000(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	res := benchJSON(t, exitOK, "-L", b.URL(), "--pubs", "500", "--subs", "500", "-q", "1", "--count", "4", "--size", "32", "--connect-timeout", "2m", "--drain", "2m")
	if res.Connected != 1000 || res.ConnectFailed != 0 {
		t.Fatalf("connected %d, failed %d: %v", res.Connected, res.ConnectFailed, res.Errors)
	}
	if res.Sent != 2000 || res.Acked != 2000 || res.Received != 2000 || res.Lost != 0 || res.Failed != 0 {
		t.Fatalf("sent %d acked %d received %d lost %d failed %d", res.Sent, res.Acked, res.Received, res.Lost, res.Failed)
	}
	l := res.LatencyMs
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) || l.Max <= 0 {
		t.Fatalf("latency percentiles out of order: %+v", l)
	}
	if res.CPUSeconds <= 0 || res.ConnectMs.Max <= 0 {
		t.Fatalf("cpu %v connect %+v", res.CPUSeconds, res.ConnectMs)
	}
}

// TestBenchTable: the table with its histogram, at QoS 2 with fan-in (more
// publishers than subscribers) against mosquitto, and over QUIC on the
// embedded broker.
func TestBenchTable(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Options{})
	r := mustRun(t, exitOK, "bench", "-L", m.URL(), "--pubs", "6", "--subs", "2", "-q", "2", "--count", "10", "--rate", "200", "--drain", "2m")
	for _, s := range []string{"8 up, 0 failed", "60 sent, 60 acknowledged, 60 received", "p99.9", "latency histogram", "█"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("no %q in:\n%s", s, r.stdout)
		}
	}
	if r.stderr != "" {
		t.Fatalf("progress or errors on stderr (not a terminal): %q", r.stderr)
	}
	b := embedded(t, mqtttest.Options{})
	res := benchJSON(t, exitOK, "-L", b.QUICURL(), "--cafile", caFile(t), "--pubs", "3", "-q", "1", "--count", "5", "--drain", "2m")
	if res.Received != 15 {
		t.Fatalf("over QUIC: %+v", res)
	}
	// Connections that cannot connect: exit 1, counted.
	res = benchJSON(t, exitError, "-L", "mqtt://127.0.0.1:1", "--pubs", "2", "--subs", "0", "--connect-timeout", "5s")
	if res.ConnectFailed != 2 || len(res.Errors) == 0 {
		t.Fatalf("%+v", res)
	}
}
