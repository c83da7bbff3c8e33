package scenario

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/clients"
)

// Publish: QoS 1 with 100 in flight (n1 messages), QoS 0 (n0 messages)
// and QoS 1 round trips one at a time (nrt), each client in a child
// process; nobody subscribes. With cAnchor, mosquitto_pub -l (one message
// per stdin line, -M 100 in flight) is measured for the pipelined cases,
// with at most 60,000 lines at QoS 1: mosquitto_pub 2.0.11 exits early
// beyond 65,535 (it stops at the first PUBACK whose id equals the last
// message's, and ids wrap).
func (e *Env) Publish(n1, n0, nrt int, cAnchor bool) ([]Sample, error) {
	var out []Sample
	type pcase struct {
		point string
		qos   byte
		n     int
		how   string
	}
	cases := []pcase{
		{"QoS 1, 100 in flight", 1, e.scaled(n1), "pipelined"},
		{"QoS 0", 0, e.scaled(n0), "pipelined"},
		{"QoS 1 round trip", 1, e.scaled(nrt), "roundtrip"},
	}
	for _, pc := range cases {
		kinds := e.Clients
		if cAnchor && pc.how == "pipelined" {
			kinds = append(kinds[:len(kinds):len(kinds)], CAnchor)
		}
		for r := range e.Rounds {
			for _, k := range rotate(kinds, r) {
				var m map[string]float64
				var err error
				if k == CAnchor {
					m, err = e.cPublish(pc.qos, min(pc.n, 60000))
				} else {
					m, err = e.publishRun(k, pc.qos, pc.n, pc.how, 100)
				}
				if err != nil {
					e.failed("publish %s %s: %v", pc.point, k, err)
					continue
				}
				s := Sample{Scenario: "publish", Point: pc.point, Client: k, Metrics: m}
				e.logf("publish %s %s: %.0f msgs/s, %.2f µs/msg, p50 %.0f µs", pc.point, k, m["msgs/s"], m["cpu-µs/msg"], m["p50-µs"])
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func (e *Env) publishRun(k clients.Kind, qos byte, n int, how string, inflight int) (map[string]float64, error) {
	c, err := e.startChild(ChildParams{Mode: "publish", Client: k, URL: e.Broker.URL(), Topic: "pb/pub/" + clients.ID("t"), QoS: qos, N: n, Inflight: inflight, Publish: how})
	if err != nil {
		return nil, err
	}
	defer c.wait()
	w := e.openWindow(c.pid)
	if err := c.send("START"); err != nil {
		return nil, err
	}
	r, err := c.result()
	if err != nil {
		return nil, err
	}
	broker, other := w.close()
	m := map[string]float64{
		"msgs/s":            float64(r.Msgs) / r.Wall.Seconds(),
		"cpu-µs/msg":        perMsg(r.CPU, r.Msgs),
		"broker-cpu-µs/msg": perMsg(broker, r.Msgs),
		"other-cpu-%":       other,
	}
	if len(r.RTTs) > 0 {
		s := slices.Clone(r.RTTs)
		slices.Sort(s)
		m["p50-µs"] = float64(s[len(s)/2]) / float64(time.Microsecond)
		m["p99-µs"] = float64(s[len(s)*99/100]) / float64(time.Microsecond)
	}
	return m, nil
}

// cPublish runs mosquitto_pub -l over n lines of 100 bytes.
func (e *Env) cPublish(qos byte, n int) (map[string]float64, error) {
	host, port, _ := strings.Cut(e.Broker.Addr(), ":")
	line := append(bytes.Clone(Payload), '\n') // a 100-byte payload per line
	in := bytes.Repeat(line, n)
	cmd := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-t", "pb/pub/"+clients.ID("c"), "-q", strconv.Itoa(int(qos)), "-l", "-M", "100", "-i", clients.ID("cpub"))
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := e.openWindow(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("mosquitto_pub: %w", err)
	}
	wall := time.Since(t0)
	broker, other := w.close()
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return map[string]float64{
		"msgs/s":            float64(n) / wall.Seconds(),
		"cpu-µs/msg":        perMsg(cpu, int64(n)),
		"broker-cpu-µs/msg": perMsg(broker, int64(n)),
		"other-cpu-%":       other,
	}, nil
}
