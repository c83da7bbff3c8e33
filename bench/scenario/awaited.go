package scenario

import (
	"fmt"

	"github.com/mqttloop/mqttloop/bench/internal/clients"
)

// Awaited: n messages published by G goroutines that each wait for every
// publish's outcome before the next (QoS 1: the PUBACK; QoS 0: the
// write), for each G in gs, with each client's blocking publish (see
// clients.Awaited). Nobody subscribes. Only the clients with a blocking
// publish take part (mqttloop's client package, autopaho, paho).
func (e *Env) Awaited(n int, gs []int, qoss []byte) ([]Sample, error) {
	var out []Sample
	var kinds []clients.Kind
	for _, k := range e.Clients {
		if k == clients.Loop || k == clients.AutoPaho || k == clients.Paho {
			kinds = append(kinds, k)
		}
	}
	for _, qos := range qoss {
		for _, g := range gs {
			point := fmt.Sprintf("QoS %d, %d goroutines", qos, g)
			for r := range e.Rounds {
				for _, k := range rotate(kinds, r) {
					m, err := e.publishRun(k, qos, e.scaled(n), "awaited", g)
					if err != nil {
						e.failed("awaited %s %s: %v", point, k, err)
						continue
					}
					e.logf("awaited %s %s: %.0f msgs/s, %.2f µs/msg", point, k, m["msgs/s"], m["cpu-µs/msg"])
					out = append(out, Sample{Scenario: "awaited", Point: point, Client: k, Metrics: m})
				}
			}
		}
	}
	return out, nil
}
