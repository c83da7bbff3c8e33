package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mqttloop/mqttloop/eventloop"
)

const checkExamples = `  mqttloop check                                   # localhost:1883, MQTT 5 and 3.1.1
  mqttloop check -L mqtts://broker.example:8883 -u me --pw-file pw.txt
  mqttloop check -L mqtt://b:1883 --try mqtts://b:8883,ws://b:8080/mqtt,wss://b:8081/mqtt,quic://b:14567
  mqttloop check --probe qos1,retained,shared      # exit 0 only if these work
  mqttloop check --json
`

// probes are check's probes, in the order of the table.
var probes = []struct{ name, what string }{
	{"connect", "connects (CONNACK success), with the connect latency"},
	{"qos0", "QoS 0 round trip (publish, receive on a subscription)"},
	{"qos1", "QoS 1 round trip"},
	{"qos2", "QoS 2 round trip"},
	{"retained", "a retained message is delivered to a new subscription"},
	{"wildcard", "wildcard subscriptions (+ and #)"},
	{"shared", "shared subscriptions ($share/group/filter), MQTT 5"},
	{"subid", "subscription identifiers, MQTT 5"},
	{"topicalias", "topic alias maximum; aliased publishes delivered, MQTT 5"},
	{"receivemax", "receive maximum, MQTT 5"},
	{"packetsize", "maximum packet size: announced, and the largest publish that round trips (tried)"},
	{"session", "session present on reconnect (persistent session), session expiry"},
	{"will", "will message delivered when a client vanishes"},
	{"transports", "each --try URL answers (tcp, tls, ws, wss, quic), with the connect latency"},
}

// Results of a probe.
const (
	resOK   = "ok"   // works
	resNo   = "no"   // the broker lacks it (announced or tried)
	resFail = "fail" // an error
	resInfo = "info" // a value; never fails the check
)

// checkRow is a line of check's table.
type checkRow struct {
	Probe   string  `json:"probe"`
	Version string  `json:"version"`
	Result  string  `json:"result"`
	Detail  string  `json:"detail"`
	Millis  float64 `json:"ms,omitempty"`
}

type checker struct {
	base    eventloop.Options
	timeout time.Duration
	prefix  string
	maxSize int
	rows    []checkRow
	want    map[string]bool
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (k *checker) add(probe string, v byte, res, detail string, d time.Duration) {
	k.rows = append(k.rows, checkRow{Probe: probe, Version: versionName(v), Result: res, Detail: detail, Millis: ms(d)})
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "check"
	var list strings.Builder
	for _, p := range probes {
		fmt.Fprintf(&list, "\n  %-11s %s", p.name, p.what)
	}
	fs := newFlagSet(name, `Probes what a broker supports, the way HiveMQ's 'mqtt test' does, and prints a table:
one row per probe and MQTT version, with ok, no (the broker lacks it: announced in
CONNACK or found by trying), fail (an error) or info (a value). The exit status is
0 when every probe asked for (--probe) is ok or info, 5 otherwise.
Probes:`+list.String(), checkExamples, stderr)
	var cf connFlags
	cf.register(fs)
	var probeList, try listFlag
	probeList.split, try.split = true, true
	fs.Var(&probeList, "probe", "probes to run, comma-separated (default: all)")
	fs.Var(&try, "try", "more broker `URLs` to connect to for the transports probe (repeatable, comma-separated)")
	versions := fs.String("versions", "5,311", "MQTT `versions` to probe: 5, 311 or both")
	timeout := fs.Duration("timeout", 5*time.Second, "time each probe may take")
	maxSize := fs.Int("max-size", 1<<20, "largest publish `bytes` the packetsize probe tries")
	asJSON := fs.Bool("json", false, "print the rows as JSON")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	want := map[string]bool{}
	for _, p := range probeList.vals {
		if !slices.ContainsFunc(probes, func(q struct{ name, what string }) bool { return q.name == p }) {
			return usageErr(stderr, name, "--probe %q: no such probe", p)
		}
		want[p] = true
	}
	if len(want) == 0 {
		for _, p := range probes {
			want[p.name] = true
		}
	}
	var vs []byte
	for _, v := range strings.Split(*versions, ",") {
		switch strings.TrimSpace(v) {
		case "5":
			vs = append(vs, 5)
		case "311", "3.1.1", "4":
			vs = append(vs, 4)
		default:
			return usageErr(stderr, name, "--versions %q: want 5, 311 or 5,311", *versions)
		}
	}
	if cf.persistent || cf.sessionExpiry >= 0 {
		return usageErr(stderr, name, "-c and -x: check makes its own sessions")
	}
	base, err := cf.options(name, stderr)
	if err != nil {
		return usageErr(stderr, name, "%v", err)
	}
	base.ClientID = ""
	base.CleanStart = true
	base.ConnectTimeout = min(base.ConnectTimeout, *timeout)
	if base.QUICHandshakeTimeout > 0 {
		base.QUICHandshakeTimeout = base.ConnectTimeout
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	k := &checker{base: base, timeout: *timeout, prefix: "mqttloop/check/" + hex.EncodeToString(r[:]), maxSize: *maxSize, want: want}
	for _, v := range vs {
		k.probeVersion(ctx, v)
	}
	if want["transports"] {
		for _, u := range append(slices.Clone(base.Servers), try.vals...) {
			k.transport(ctx, u)
		}
	}

	code := exitOK
	for _, row := range k.rows {
		if row.Result == resNo || row.Result == resFail {
			code = exitCheck
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(k.rows, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBE\tMQTT\tRESULT\tDETAIL")
	for _, row := range k.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Probe, row.Version, row.Result, row.Detail)
	}
	tw.Flush()
	if code != exitOK {
		fmt.Fprintln(stdout, "\nnot everything asked for works (exit 5)")
	}
	return code
}

// opts returns the options of a probe's connection at version v.
func (k *checker) opts(v byte) eventloop.Options {
	o := k.base
	o.ProtocolVersion = v
	var r [4]byte
	_, _ = rand.Read(r[:])
	o.ClientID = "mqttloop-check-" + hex.EncodeToString(r[:])
	return o
}

// dial connects a probe's client.
func (k *checker) dial(ctx context.Context, o eventloop.Options) (*client, eventloop.Connected, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	return dial(ctx, o)
}

func (k *checker) probeVersion(ctx context.Context, v byte) {
	c, ack, took, err := k.dial(ctx, k.opts(v))
	if err != nil {
		k.add("connect", v, resFail, err.Error(), 0)
		return
	}
	c.disconnect(0)
	if k.want["connect"] {
		k.add("connect", v, resOK, fmt.Sprintf("%s over %s in %.1f ms; max QoS %d, keepalive %v", ack.Server, ack.Transport, ms(took), ack.MaximumQoS, ack.KeepAlive), took)
	}
	for q := byte(0); q <= 2; q++ {
		if k.want[fmt.Sprintf("qos%d", q)] {
			k.roundTrip(ctx, v, q)
		}
	}
	steps := []struct {
		name  string
		only5 bool
		f     func(context.Context, byte, eventloop.Connected)
	}{
		{"retained", false, k.retained}, {"wildcard", false, k.wildcard}, {"shared", true, k.shared},
		{"subid", true, k.subID}, {"topicalias", true, k.topicAlias}, {"receivemax", true, k.receiveMax},
		{"packetsize", false, k.packetSize}, {"session", false, k.session}, {"will", false, k.will},
	}
	for _, s := range steps {
		if k.want[s.name] && (v == 5 || !s.only5) {
			s.f(ctx, v, ack)
		}
	}
}

// withClient runs f on a fresh subscribed client: it subscribes to filter
// (if not empty) with sub's options.
func (k *checker) withClient(ctx context.Context, o eventloop.Options, sub *eventloop.Subscribe, f func(ctx context.Context, c *client) error) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	c, _, _, err := dial(ctx, o)
	if err != nil {
		return err
	}
	defer c.disconnect(0)
	if sub != nil {
		if err := c.subscribe(ctx, *sub); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	return f(ctx, c)
}

func sub1(filter string, qos byte) *eventloop.Subscribe {
	return &eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: filter, QoS: qos}}}
}

// failure turns a probe error into no (refused or lost: the broker lacks
// it) or fail.
func failure(err error) string {
	var rc *eventloop.ReasonCodeError
	switch {
	case errors.As(err, &rc), errors.Is(err, errEnded), errors.Is(err, eventloop.ErrNotSupported), errors.Is(err, eventloop.ErrPacketTooLarge):
		return resNo
	}
	return resFail
}

func (k *checker) roundTrip(ctx context.Context, v, q byte) {
	topic := fmt.Sprintf("%s/v%d/qos%d", k.prefix, v, q)
	var took time.Duration
	var got byte
	err := k.withClient(ctx, k.opts(v), sub1(topic, 2), func(ctx context.Context, c *client) error {
		began := time.Now()
		c.requests <- eventloop.Publish{Topic: topic, QoS: q, Payload: []byte("round trip")}
		m, err := c.message(ctx, topic)
		took = time.Since(began)
		got = m.QoS
		return err
	})
	name := fmt.Sprintf("qos%d", q)
	switch {
	case err != nil:
		k.add(name, v, failure(err), err.Error(), 0)
	case got != q:
		k.add(name, v, resNo, fmt.Sprintf("published at QoS %d, delivered at QoS %d", q, got), took)
	default:
		k.add(name, v, resOK, fmt.Sprintf("round trip %.1f ms", ms(took)), took)
	}
}

func (k *checker) retained(ctx context.Context, v byte, ack eventloop.Connected) {
	if v == 5 && !ack.RetainAvailable {
		k.add("retained", v, resNo, "CONNACK: Retain Available 0", 0)
		return
	}
	topic := fmt.Sprintf("%s/v%d/retained", k.prefix, v)
	err := k.withClient(ctx, k.opts(v), nil, func(ctx context.Context, c *client) error {
		if err := c.publish(ctx, eventloop.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
			return err
		}
		if err := c.subscribe(ctx, *sub1(topic, 1)); err != nil {
			return err
		}
		m, err := c.message(ctx, topic)
		if err != nil {
			return err
		}
		if !m.Retain {
			return errors.New("delivered without the retain flag")
		}
		return c.publish(ctx, eventloop.Publish{Topic: topic, QoS: 1, Retain: true}) // clear it
	})
	if err != nil {
		k.add("retained", v, failure(err), "tried: "+err.Error(), 0)
		return
	}
	k.add("retained", v, resOK, "delivered to a new subscription with the retain flag", 0)
}

func (k *checker) wildcard(ctx context.Context, v byte, ack eventloop.Connected) {
	if v == 5 && !ack.WildcardSubscriptionAvailable {
		k.add("wildcard", v, resNo, "CONNACK: Wildcard Subscription Available 0", 0)
		return
	}
	base := fmt.Sprintf("%s/v%d/wild", k.prefix, v)
	err := k.withClient(ctx, k.opts(v), &eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: base + "/+/x/#", QoS: 1}}}, func(ctx context.Context, c *client) error {
		c.requests <- eventloop.Publish{Topic: base + "/a/x/b/c", QoS: 1, Payload: []byte("w")}
		_, err := c.message(ctx, base+"/a/x/b/c")
		return err
	})
	if err != nil {
		k.add("wildcard", v, failure(err), err.Error(), 0)
		return
	}
	k.add("wildcard", v, resOK, "+ and # match", 0)
}

func (k *checker) shared(ctx context.Context, v byte, ack eventloop.Connected) {
	if !ack.SharedSubscriptionAvailable {
		k.add("shared", v, resNo, "CONNACK: Shared Subscription Available 0", 0)
		return
	}
	topic := k.prefix + "/shared"
	err := k.withClient(ctx, k.opts(v), sub1("$share/g/"+topic, 1), func(ctx context.Context, c *client) error {
		c.requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("s")}
		_, err := c.message(ctx, topic)
		return err
	})
	if err != nil {
		k.add("shared", v, failure(err), err.Error(), 0)
		return
	}
	k.add("shared", v, resOK, "$share/g/... delivers", 0)
}

func (k *checker) subID(ctx context.Context, v byte, ack eventloop.Connected) {
	if !ack.SubscriptionIdentifiersAvailable {
		k.add("subid", v, resNo, "CONNACK: Subscription Identifier Available 0", 0)
		return
	}
	topic := k.prefix + "/subid"
	sub := sub1(topic, 1)
	sub.SubscriptionID = 7
	err := k.withClient(ctx, k.opts(v), sub, func(ctx context.Context, c *client) error {
		c.requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("i")}
		m, err := c.message(ctx, topic)
		if err != nil {
			return err
		}
		if m.Properties == nil || !slices.Contains(m.Properties.SubscriptionIDs, 7) {
			return errors.New("delivered without the subscription identifier")
		}
		return nil
	})
	if err != nil {
		k.add("subid", v, resNo, err.Error(), 0)
		return
	}
	k.add("subid", v, resOK, "delivered with the identifier", 0)
}

func (k *checker) topicAlias(ctx context.Context, v byte, ack eventloop.Connected) {
	if ack.TopicAliasMaximum == 0 {
		k.add("topicalias", v, resInfo, "0: the broker takes no topic aliases", 0)
		return
	}
	topic := k.prefix + "/alias"
	o := k.opts(v)
	o.OutgoingTopicAliases = 1
	err := k.withClient(ctx, o, sub1(topic, 1), func(ctx context.Context, c *client) error {
		for i := 0; i < 2; i++ { // the second publish carries the alias alone
			c.requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("a")}
			if _, err := c.message(ctx, topic); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		k.add("topicalias", v, failure(err), fmt.Sprintf("maximum %d; aliased publish: %v", ack.TopicAliasMaximum, err), 0)
		return
	}
	k.add("topicalias", v, resInfo, fmt.Sprintf("maximum %d; aliased publishes delivered", ack.TopicAliasMaximum), 0)
}

func (k *checker) receiveMax(_ context.Context, v byte, ack eventloop.Connected) {
	k.add("receivemax", v, resInfo, fmt.Sprintf("%d QoS 1/2 publishes in flight", ack.ReceiveMaximum), 0)
}

func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		if n >= 1<<20 && n%(1<<20) == 0 {
			return fmt.Sprintf("%d MiB", n>>20)
		}
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func (k *checker) packetSize(ctx context.Context, v byte, ack eventloop.Connected) {
	topic := fmt.Sprintf("%s/v%d/size", k.prefix, v)
	announced := "none announced"
	if ack.MaximumPacketSize > 0 {
		announced = fmt.Sprintf("announced %d bytes", ack.MaximumPacketSize)
	}
	largest, stop := 0, ""
	c, _, _, err := k.dial(ctx, k.opts(v))
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, k.timeout)
		err = c.subscribe(sctx, *sub1(topic, 1))
		cancel()
	}
	if err != nil {
		if c != nil {
			c.close()
		}
		k.add("packetsize", v, resFail, err.Error(), 0)
		return
	}
sizes:
	for size := 1 << 10; size <= k.maxSize; size *= 4 {
		sctx, cancel := context.WithTimeout(ctx, k.timeout)
		c.requests <- eventloop.Publish{Topic: topic, QoS: 1, Payload: make([]byte, size)}
		m, err := c.message(sctx, topic)
		cancel()
		if err == nil && len(m.Payload) != size {
			err = fmt.Errorf("came back with %d bytes", len(m.Payload))
		}
		if err != nil {
			switch {
			case errors.Is(err, eventloop.ErrPacketTooLarge):
				stop = fmt.Sprintf("; %s: larger than announced", sizeName(size))
			case errors.Is(err, errEnded):
				stop = fmt.Sprintf("; %s: the broker closed the connection", sizeName(size))
			default:
				stop = fmt.Sprintf("; %s: %v", sizeName(size), err)
			}
			break sizes
		}
		largest = size
	}
	c.disconnect(0)
	if largest == 0 {
		k.add("packetsize", v, resNo, announced+"; not even 1 KiB round trips"+stop, 0)
		return
	}
	k.add("packetsize", v, resInfo, fmt.Sprintf("%s; %s round trips%s", announced, sizeName(largest), stop), 0)
}

func (k *checker) session(ctx context.Context, v byte, _ eventloop.Connected) {
	o := k.opts(v)
	o.CleanStart = true
	if v == 5 {
		o.SessionExpiry = 5 * time.Minute
	} else {
		o.CleanStart = false // 3.1.1: Clean Session 0 is the persistent session
	}
	c, _, _, err := k.dial(ctx, o)
	if err != nil {
		k.add("session", v, resFail, err.Error(), 0)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, k.timeout)
	err = c.subscribe(sctx, *sub1(k.prefix+"/session", 1))
	cancel()
	c.disconnect(0)
	if err != nil {
		k.add("session", v, resFail, err.Error(), 0)
		return
	}
	o.CleanStart = false
	c, ack, _, err := k.dial(ctx, o)
	if err != nil {
		k.add("session", v, resFail, "reconnect: "+err.Error(), 0)
		return
	}
	c.disconnect(0)
	// Leave no session behind.
	o.CleanStart, o.SessionExpiry = true, 0
	if c, _, _, err := k.dial(ctx, o); err == nil {
		c.disconnect(0)
	}
	expiry := ""
	if v == 5 {
		expiry = fmt.Sprintf("; session expiry %v", ack.SessionExpiry)
	}
	if !ack.SessionPresent {
		k.add("session", v, resNo, "reconnected without session present"+expiry, 0)
		return
	}
	k.add("session", v, resOK, "session present on reconnect"+expiry, 0)
}

func (k *checker) will(ctx context.Context, v byte, _ eventloop.Connected) {
	topic := fmt.Sprintf("%s/v%d/will", k.prefix, v)
	err := k.withClient(ctx, k.opts(v), sub1(topic, 1), func(ctx context.Context, watcher *client) error {
		o := k.opts(v)
		o.Will = &eventloop.Will{Topic: topic, Payload: []byte("gone"), QoS: 1}
		c, _, _, err := dial(ctx, o)
		if err != nil {
			return err
		}
		c.loop.Close() // vanish without DISCONNECT
		c.drain()
		_, err = watcher.message(ctx, topic)
		return err
	})
	if err != nil {
		k.add("will", v, resNo, err.Error(), 0)
		return
	}
	k.add("will", v, resOK, "delivered when the client vanished", 0)
}

func (k *checker) transport(ctx context.Context, url string) {
	o := k.opts(5)
	o.Servers = []string{url}
	o.QUICHandshakeTimeout = o.ConnectTimeout
	c, ack, took, err := k.dial(ctx, o)
	if err != nil {
		o.ProtocolVersion = 4
		if c, ack, took, err = k.dial(ctx, o); err != nil {
			k.rows = append(k.rows, checkRow{Probe: "transports", Version: "-", Result: resFail, Detail: url + ": " + err.Error()})
			return
		}
	}
	c.disconnect(0)
	k.rows = append(k.rows, checkRow{Probe: "transports", Version: versionName(ack.ProtocolVersion), Result: resOK,
		Detail: fmt.Sprintf("%s answers over %s in %.1f ms", url, ack.Transport, ms(took)), Millis: ms(took)})
}
