package scenario

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mqttloop/mqttloop/bench/internal/brokers"
	"github.com/mqttloop/mqttloop/bench/internal/clients"
	"github.com/mqttloop/mqttloop/bench/internal/measure"
)

// CAnchor is the C client (libmosquitto's mosquitto_sub/mosquitto_pub),
// measured where it can do the scenario validly.
const CAnchor clients.Kind = "libmosquitto"

// Env is what every scenario runs with.
type Env struct {
	Exe     string // this program, re-executed as the child
	Broker  *brokers.Mosquitto
	Clients []clients.Kind
	Rounds  int
	Log     io.Writer // progress
	Scale   float64   // multiplies message counts and durations (quick runs: < 1)
	// Failures lists the measurements that failed; the others go on.
	Failures []string
}

// failed records a failed measurement and logs it.
func (e *Env) failed(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.Failures = append(e.Failures, msg)
	e.logf("FAILED: %s", msg)
}

// Sample is one measurement of one client at one point of a scenario.
type Sample struct {
	Scenario, Point string
	Client          clients.Kind
	Metrics         map[string]float64
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	sc    *bufio.Scanner
	pid   int
}

func (e *Env) startChild(p ChildParams) (*child, error) {
	b, _ := json.Marshal(p)
	cmd := exec.Command(e.Exe, "child", string(b))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, sc: bufio.NewScanner(stdout), pid: cmd.Process.Pid}
	c.sc.Buffer(make([]byte, 1<<20), 64<<20)
	if _, err := c.expect("READY"); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

func (c *child) send(line string) error {
	_, err := fmt.Fprintln(c.stdin, line)
	return err
}

// expect reads lines until one starts with prefix and returns the rest.
func (c *child) expect(prefix string) (string, error) {
	for c.sc.Scan() {
		if rest, ok := strings.CutPrefix(c.sc.Text(), prefix); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", fmt.Errorf("child exited before %q (%v)", prefix, c.sc.Err())
}

func (c *child) result() (Result, error) {
	s, err := c.expect("RESULT")
	if err != nil {
		return Result{}, err
	}
	var r Result
	return r, json.Unmarshal([]byte(s), &r)
}

func (c *child) wait() error {
	_ = c.stdin.Close()
	return c.cmd.Wait()
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// window measures the broker's CPU and the rest of the machine's over a
// measurement.
type window struct {
	broker0, busy0, helpers0, self0 time.Duration
	brokerPID                       int
	helpers                         []int
	t0                              time.Time
}

func (e *Env) openWindow(helpers ...int) *window {
	w := &window{brokerPID: e.Broker.PID(), helpers: helpers, t0: time.Now()}
	w.broker0 = measure.PidCPU(w.brokerPID)
	w.busy0, _ = measure.MachineBusy()
	w.self0 = measure.SelfCPU()
	for _, p := range helpers {
		w.helpers0 += measure.PidCPU(p)
	}
	return w
}

// close returns the broker's CPU and the CPU every process other than the
// broker, the helpers and this one (the feeding publisher) used, in % of
// the machine: a disturbed measurement shows here.
func (w *window) close() (broker time.Duration, otherPct float64) {
	wall := time.Since(w.t0)
	broker = measure.PidCPU(w.brokerPID) - w.broker0
	busy, cpus := measure.MachineBusy()
	var helpers time.Duration
	for _, p := range w.helpers {
		helpers += measure.PidCPU(p)
	}
	helpers -= w.helpers0
	self := measure.SelfCPU() - w.self0 // the feeding publisher
	other := busy - w.busy0 - broker - helpers - self
	if cpus == 0 || wall <= 0 {
		return broker, 0
	}
	return broker, max(0, 100*float64(other)/float64(wall)/float64(cpus))
}

// rotate returns the clients in the order of round r (interleaving: each
// round starts with the next client).
func rotate(ks []clients.Kind, r int) []clients.Kind {
	n := len(ks)
	out := make([]clients.Kind, n)
	for i := range ks {
		out[i] = ks[(i+r)%n]
	}
	return out
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, format+"\n", args...)
	}
}

func (e *Env) scaled(n int) int { return max(1, int(float64(n)*e.Scale)) }

func hasClient(ks []clients.Kind, k clients.Kind) bool { return slices.Contains(ks, k) }

// median of xs (NaN-free).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Table prints the medians of samples, one row per scenario point and
// client, with the metrics in the order given.
func Table(w io.Writer, samples []Sample, metrics []string) {
	type key struct {
		scen, point string
		client      clients.Kind
	}
	var order []key
	vals := map[key]map[string][]float64{}
	for _, s := range samples {
		k := key{s.Scenario, s.Point, s.Client}
		if vals[k] == nil {
			vals[k] = map[string][]float64{}
			order = append(order, k)
		}
		for m, v := range s.Metrics {
			vals[k][m] = append(vals[k][m], v)
		}
	}
	fmt.Fprintf(w, "| scenario | point | client | runs |")
	for _, m := range metrics {
		fmt.Fprintf(w, " %s |", m)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|---|---|---|")
	for range metrics {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	for _, k := range order {
		runs := 0
		for _, v := range vals[k] {
			runs = max(runs, len(v))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d |", k.scen, k.point, k.client, runs)
		for _, m := range metrics {
			v, ok := vals[k][m]
			if !ok {
				fmt.Fprint(w, " |")
				continue
			}
			fmt.Fprintf(w, " %s |", format(median(v), v))
		}
		fmt.Fprintln(w)
	}
}

func format(med float64, all []float64) string {
	f := func(x float64) string {
		switch {
		case x >= 1000:
			return fmt.Sprintf("%.0f", x)
		case x >= 10:
			return fmt.Sprintf("%.1f", x)
		default:
			return fmt.Sprintf("%.3g", x)
		}
	}
	if len(all) < 2 {
		return f(med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(med), f(slices.Min(all)), f(slices.Max(all)))
}
