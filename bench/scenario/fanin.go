package scenario

import (
	"strconv"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/rawpub"
)

// FanIn: N subscribers in one process, 1,000 QoS 0 messages per second in
// total spread over them round-robin (one topic each), for 5 s. Reports
// the whole client process's CPU per message delivered.
func (e *Env) FanIn(ns []int) ([]Sample, error) {
	const rate = 1000
	var out []Sample
	for _, n := range ns {
		msgs := e.scaled(5 * rate)
		settle := 1*time.Second + time.Duration(n/10)*time.Millisecond
		for r := range e.Rounds {
			for _, k := range rotate(e.Clients, r) {
				run, err := e.subscribeRun(k, n, 0, settle, func(pub *rawpub.Pub, prefix string) (int, error) {
					topics := make([]string, n)
					for i := range topics {
						topics[i] = prefix + "/" + strconv.Itoa(i)
					}
					return msgs, pub.Paced(topics, Payload, msgs, time.Second/rate)
				})
				if err != nil {
					e.failed("fan-in N=%d %s: %v", n, k, err)
					continue
				}
				s := Sample{Scenario: "fan-in 1000 msg/s", Point: "N=" + strconv.Itoa(n), Client: k, Metrics: run.metrics()}
				e.logf("%s %s %s: %.1f µs/msg, other %.1f%%", s.Scenario, s.Point, k, s.Metrics["cpu-µs/msg"], run.otherPct)
				out = append(out, s)
			}
		}
	}
	return out, nil
}
