package scenario

import (
	"strconv"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/rawpub"
)

// Idle: n connected, subscribed, idle clients in one process. After they
// settled (2 s), the whole process's CPU over 10 s in % of one core, and
// memory per connection: RSS, Go heap in use and goroutine stacks, each
// measured after two GCs and counted from before the first connect.
func (e *Env) Idle(n int) ([]Sample, error) {
	var out []Sample
	idle := time.Duration(float64(10*time.Second) * e.Scale)
	for r := range e.Rounds {
		for _, k := range rotate(e.Clients, r) {
			run, err := e.subscribeRun(k, n, 0, 2*time.Second, func(*rawpub.Pub, string) (int, error) {
				time.Sleep(idle)
				return 0, nil
			})
			if err != nil {
				e.failed("idle %d %s: %v", n, k, err)
				continue
			}
			res := run.res
			per := func(a, b int64) float64 { return float64(a-b) / 1024 / float64(max(res.Loops, 1)) }
			m := map[string]float64{
				"cpu-%":           100 * float64(res.CPU) / float64(res.Wall),
				"rss-KiB/conn":    per(res.MemAfter.RSS, res.MemBefore.RSS),
				"heap-KiB/conn":   per(res.MemAfter.HeapInuse, res.MemBefore.HeapInuse),
				"stack-KiB/conn":  per(res.MemAfter.StackInuse, res.MemBefore.StackInuse),
				"goroutines/conn": float64(res.MemAfter.Goroutines-res.MemBefore.Goroutines) / float64(max(res.Loops, 1)),
				"connect-s":       res.ConnectWall.Seconds(),
				"broker-cpu-%":    100 * float64(run.broker) / float64(res.Wall),
				"other-cpu-%":     run.otherPct,
			}
			s := Sample{Scenario: "idle", Point: strconv.Itoa(n) + " connections", Client: k, Metrics: m}
			e.logf("idle %d %s: cpu %.3f%%, heap %.1f KiB/conn, rss %.1f KiB/conn", n, k, m["cpu-%"], m["heap-KiB/conn"], m["rss-KiB/conn"])
			out = append(out, s)
		}
	}
	return out, nil
}
