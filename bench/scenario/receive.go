package scenario

import (
	"fmt"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/clients"
	"github.com/mqttloop/mqttloop/bench/internal/rawpub"
)

// Receive: one subscriber receives n messages of 100 bytes at QoS 0 and
// at QoS 1, fed by the raw publisher of this process (QoS 0: as fast as
// the socket takes them; QoS 1: 1,000 in flight). mosquitto queues what
// the subscriber has not taken yet (max_queued_messages 0), so the rate is
// the subscriber's. With cAnchor, mosquitto_sub -C n is measured too.
func (e *Env) Receive(n int, cAnchor bool) ([]Sample, error) {
	var out []Sample
	n = e.scaled(n)
	for _, qos := range []byte{0, 1} {
		feed := func(pub *rawpub.Pub, topic string) (int, error) {
			if qos == 0 {
				return n, pub.BlastQoS0(topic, Payload, n)
			}
			return n, pub.PublishQoS1(topic, Payload, n, 1000)
		}
		kinds := e.Clients
		if cAnchor {
			kinds = append(kinds[:len(kinds):len(kinds)], CAnchor)
		}
		for r := range e.Rounds {
			for _, k := range rotate(kinds, r) {
				var run subRun
				var err error
				if k == CAnchor {
					run, err = e.cSubscribe(qos, feed, n)
				} else {
					run, err = e.subscribeRun(k, 1, qos, 300*time.Millisecond, func(pub *rawpub.Pub, prefix string) (int, error) {
						return feed(pub, prefix+"/0")
					})
				}
				if err != nil {
					e.failed("receive QoS %d %s: %v", qos, k, err)
					continue
				}
				s := Sample{Scenario: "receive", Point: fmt.Sprintf("QoS %d", qos), Client: k, Metrics: run.metrics()}
				e.logf("receive QoS %d %s: %.0f msgs/s, %.2f µs/msg, broker %.2f µs/msg, other %.1f%%", qos, k, s.Metrics["msgs/s"], s.Metrics["cpu-µs/msg"], s.Metrics["broker-cpu-µs/msg"], run.otherPct)
				out = append(out, s)
			}
		}
	}
	return out, nil
}

var _ = clients.Loop
