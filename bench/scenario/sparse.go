package scenario

import (
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/rawpub"
)

// Sparse: one subscriber receiving a QoS 0 message every interval, for
// 5 s: the CPU per message of a client that is idle between messages.
func (e *Env) Sparse(intervals []time.Duration) ([]Sample, error) {
	var out []Sample
	for _, iv := range intervals {
		msgs := e.scaled(int(5 * time.Second / iv))
		for r := range e.Rounds {
			for _, k := range rotate(e.Clients, r) {
				run, err := e.subscribeRun(k, 1, 0, 300*time.Millisecond, func(pub *rawpub.Pub, prefix string) (int, error) {
					return msgs, pub.Paced([]string{prefix + "/0"}, Payload, msgs, iv)
				})
				if err != nil {
					e.failed("sparse %v %s: %v", iv, k, err)
					continue
				}
				s := Sample{Scenario: "sparse", Point: "every " + iv.String(), Client: k, Metrics: run.metrics()}
				e.logf("%s %s %s: %.1f µs/msg", s.Scenario, s.Point, k, s.Metrics["cpu-µs/msg"])
				out = append(out, s)
			}
		}
	}
	return out, nil
}
