//go:build linux

// Command peerbench compares mqttloop with the reader-goroutine baseline,
// eclipse/paho.mqtt.golang, paho.golang's autopaho and (where valid)
// libmosquitto's command-line clients against a mosquitto it starts, in
// interleaved rounds, and prints markdown tables of medians (min–max).
//
//	go run ./cmd/peerbench -scenarios fanin,sparse,idle,receive,publish
//	go run ./cmd/peerbench -scenarios fanin -fanin 1,100,10000 -rounds 2
//
// Scenarios (see package scenario): fanin (N loops in one process, 1,000
// msg/s spread over them), sparse (one loop, a message every 1 ms and 10
// ms), idle (10,000 idle connections: CPU and memory per connection),
// receive (QoS 0 and QoS 1, 100k messages from a raw publisher), publish
// (QoS 1 with 100 in flight, QoS 0, QoS 1 round trips), awaited (not in
// the default set: G goroutines each waiting for every publish's outcome,
// mqttloop's client package against autopaho and paho.mqtt.golang;
// -awaited-goroutines, -awaited-n).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/brokers"
	"github.com/mqttloop/mqttloop/bench/internal/clients"
	"github.com/mqttloop/mqttloop/bench/internal/measure"
	"github.com/mqttloop/mqttloop/bench/scenario"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "child" {
		var p scenario.ChildParams
		if err := json.Unmarshal([]byte(os.Args[2]), &p); err != nil {
			fatal(err)
		}
		if err := scenario.RunChild(p, os.Stdin, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	var (
		scenarios = flag.String("scenarios", "fanin,sparse,idle,receive,publish", "comma-separated scenarios")
		clientsF  = flag.String("clients", "mqttloop,mqttloop-select,baseline,paho,autopaho", "comma-separated clients")
		rounds    = flag.Int("rounds", 3, "interleaved rounds per measurement")
		fanin     = flag.String("fanin", "1,10,100,1000,10000", "loops per process for fanin")
		idleN     = flag.Int("idle", 10000, "connections for idle")
		recvN     = flag.Int("receive-n", 100000, "messages per receive measurement")
		scale     = flag.Float64("scale", 1, "multiplies message counts and durations (quick runs: 0.2)")
		noC       = flag.Bool("no-c", false, "skip the libmosquitto anchor")
		awaitedG  = flag.String("awaited-goroutines", "1,8,64", "goroutines publishing for awaited")
		awaitedN  = flag.Int("awaited-n", 50000, "messages per awaited measurement")
	)
	flag.Parse()
	limit := measure.RaiseFileLimit(65536)
	m, err := brokers.StartMosquitto()
	if err != nil {
		fatal(err)
	}
	defer m.Stop()
	exe, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	env := &scenario.Env{Exe: exe, Broker: m, Rounds: *rounds, Log: os.Stderr, Scale: *scale}
	for _, c := range strings.Split(*clientsF, ",") {
		env.Clients = append(env.Clients, clients.Kind(strings.TrimSpace(c)))
	}
	_, cerr := os.Stat("/usr/bin/mosquitto_sub")
	cAnchor := !*noC && cerr == nil
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("peerbench %s: mosquitto at %s, RLIMIT_NOFILE %d, load %s\n", time.Now().Format(time.RFC3339), m.Addr(), limit, strings.TrimSpace(string(load)))
	var all []scenario.Sample
	var errs []error
	for _, sc := range strings.Split(*scenarios, ",") {
		var s []scenario.Sample
		var err error
		var metrics []string
		switch strings.TrimSpace(sc) {
		case "fanin":
			var ns []int
			for _, f := range strings.Split(*fanin, ",") {
				n, _ := strconv.Atoi(f)
				ns = append(ns, n)
			}
			s, err = env.FanIn(ns)
			metrics = []string{"cpu-µs/msg", "broker-cpu-µs/msg", "msgs/s", "other-cpu-%"}
		case "sparse":
			s, err = env.Sparse([]time.Duration{time.Millisecond, 10 * time.Millisecond})
			metrics = []string{"cpu-µs/msg", "broker-cpu-µs/msg", "msgs/s", "other-cpu-%"}
		case "idle":
			s, err = env.Idle(*idleN)
			metrics = []string{"cpu-%", "rss-KiB/conn", "heap-KiB/conn", "stack-KiB/conn", "goroutines/conn", "connect-s", "broker-cpu-%", "other-cpu-%"}
		case "receive":
			s, err = env.Receive(*recvN, cAnchor)
			metrics = []string{"msgs/s", "cpu-µs/msg", "broker-cpu-µs/msg", "other-cpu-%"}
		case "publish":
			s, err = env.Publish(100000, 200000, 10000, cAnchor)
			metrics = []string{"msgs/s", "cpu-µs/msg", "broker-cpu-µs/msg", "p50-µs", "p99-µs", "other-cpu-%"}
		case "awaited":
			var gs []int
			for _, f := range strings.Split(*awaitedG, ",") {
				n, _ := strconv.Atoi(f)
				gs = append(gs, n)
			}
			s, err = env.Awaited(*awaitedN, gs, []byte{1, 0})
			metrics = []string{"msgs/s", "cpu-µs/msg", "broker-cpu-µs/msg", "other-cpu-%"}
		default:
			err = fmt.Errorf("unknown scenario %q", sc)
		}
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintln(os.Stderr, "peerbench:", err)
		}
		if len(s) > 0 {
			fmt.Println()
			scenario.Table(os.Stdout, s, metrics)
		}
		all = append(all, s...)
	}
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nload at the end: %s\n", strings.TrimSpace(string(load)))
	for _, f := range env.Failures {
		fmt.Printf("FAILED: %s\n", f)
	}
	if len(errs) > 0 {
		m.Stop()
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "peerbench:", err)
	os.Exit(1)
}
