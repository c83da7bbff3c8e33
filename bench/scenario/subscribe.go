package scenario

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/clients"
	"github.com/mqttloop/mqttloop/bench/internal/rawpub"
)

// subRun is one measurement of subscribers in a child process: loops
// subscribers connect (topics prefix/0 … prefix/loops-1), wait settle,
// then feed publishes from this process; the child counts what arrives.
type subRun struct {
	res      Result
	broker   time.Duration
	otherPct float64
}

func (e *Env) subscribeRun(k clients.Kind, loops int, qos byte, settle time.Duration, feed func(pub *rawpub.Pub, prefix string) (int, error)) (subRun, error) {
	prefix := "pb/" + clients.ID("t")
	c, err := e.startChild(ChildParams{Mode: "subscribe", Client: k, URL: e.Broker.URL(), Loops: loops, Topic: prefix, QoS: qos})
	if err != nil {
		return subRun{}, err
	}
	defer c.wait()
	pub, err := rawpub.Dial(e.Broker.Addr(), clients.ID("feed"))
	if err != nil {
		c.kill()
		return subRun{}, err
	}
	defer pub.Close()
	time.Sleep(settle)
	w := e.openWindow(c.pid)
	if err := c.send("START"); err != nil {
		return subRun{}, err
	}
	if _, err := c.expect("STARTED"); err != nil {
		return subRun{}, err
	}
	n, err := feed(pub, prefix)
	if err != nil {
		c.kill()
		return subRun{}, err
	}
	if err := c.send("STOP " + strconv.Itoa(n)); err != nil {
		return subRun{}, err
	}
	r, err := c.result()
	if err != nil {
		return subRun{}, err
	}
	broker, other := w.close()
	if int(r.Msgs) < n {
		return subRun{}, fmt.Errorf("%s: %d of %d messages arrived", k, r.Msgs, n)
	}
	return subRun{res: r, broker: broker, otherPct: other}, nil
}

func perMsg(d time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d) / float64(time.Microsecond) / float64(n)
}

func (s subRun) metrics() map[string]float64 {
	r := s.res
	m := map[string]float64{
		"cpu-µs/msg":        perMsg(r.CPU, r.Msgs),
		"broker-cpu-µs/msg": perMsg(s.broker, r.Msgs),
		"other-cpu-%":       s.otherPct,
	}
	if r.Wall > 0 {
		m["msgs/s"] = float64(r.Msgs) / r.Wall.Seconds()
	}
	return m
}

// cSubscribe is the C anchor for receiving: mosquitto_sub -C n, its CPU
// from the kernel's accounting of the child. It is given 500 ms to
// subscribe before the feed starts (it has no ready signal).
func (e *Env) cSubscribe(qos byte, feed func(pub *rawpub.Pub, topic string) (int, error), n int) (subRun, error) {
	host, port, _ := strings.Cut(e.Broker.Addr(), ":")
	topic := "pb/" + clients.ID("c")
	cmd := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-q", strconv.Itoa(int(qos)), "-C", strconv.Itoa(n), "-i", clients.ID("csub"))
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	defer devnull.Close()
	cmd.Stdout = devnull
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return subRun{}, err
	}
	pub, err := rawpub.Dial(e.Broker.Addr(), clients.ID("feed"))
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return subRun{}, err
	}
	defer pub.Close()
	time.Sleep(500 * time.Millisecond)
	w := e.openWindow(cmd.Process.Pid)
	t0 := time.Now()
	errc := make(chan error, 1)
	go func() { _, err := feed(pub, topic); errc <- err }()
	werr := cmd.Wait()
	wall := time.Since(t0)
	broker, other := w.close()
	if err := <-errc; err != nil {
		return subRun{}, err
	}
	if werr != nil {
		return subRun{}, fmt.Errorf("mosquitto_sub: %w", werr)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return subRun{res: Result{Msgs: int64(n), Wall: wall, CPU: cpu}, broker: broker, otherPct: other}, nil
}
