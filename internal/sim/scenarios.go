package sim

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mqttloop/mqttloop/reconnect"
)

// Base returns a moderate configuration: msgs publishes from the client and
// msgs/2 to it, random cuts, some failed dials, a broker that keeps the
// session.
//
// Timing constraints every configuration here keeps, so that nothing may
// legitimately declare a healthy connection dead: a round trip
// (2 × (MaxDelay + SpikeMax)) is shorter than the ping timeout and the ack
// timeout, and shorter than keepalive/2 + the early ping margin (the
// broker's 1.5 × keepalive).
func Base(seed uint64, msgs int) Config {
	return Config{
		Seed:            seed,
		Name:            "base",
		ClientPublishes: msgs,
		BrokerPublishes: msgs / 2,
		PublishGap:      5 * time.Millisecond,
		BrokerGap:       10 * time.Millisecond,
		Burst:           0.2,
		QoS0:            0.1,
		QoS2:            0.45,

		KeepAlive:      5 * time.Second,
		ConnectTimeout: 3 * time.Second,
		HealthyAfter:   5 * time.Second,
		MaxInflight:    20,
		OfflineQueue:   500,
		Policy:         reconnect.Automatic,
		AppRestart:     500 * time.Millisecond,
		// The loop waits in the poller (WaitReadable) for half the
		// seeds (2, 3, 6, 7, ...), independently of seed%2, which some
		// scenarios use.
		WakeAfterSend: seed/2%2 == 1,

		BackoffInitial: 100 * time.Millisecond,
		BackoffMax:     5 * time.Second,
		BackoffJitter:  0.5,

		ReceiveMaximum:   50,
		ClientReceiveMax: 20,

		MinDelay:  time.Millisecond,
		MaxDelay:  20 * time.Millisecond,
		SpikeProb: 0.01,
		SpikeMax:  200 * time.Millisecond,
		NoticeMin: time.Millisecond,
		NoticeMax: 300 * time.Millisecond,
		CutMean:   3 * time.Second,
		DialFail:  0.1,

		// Virtual time is cheap while little happens: slow configurations
		// (a window of one, slow manual acks) take long to drain.
		Drain: time.Hour,
	}
}

// Random derives a configuration from the seed: which faults are on, how
// hard, and the client's and broker's options, so that many seeds cover
// the combinations.
func Random(seed uint64, msgs int) Config {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	pick := func(n int) int { return r.IntN(n) }
	chance := func(p float64) bool { return r.Float64() < p }
	dur := func(ds ...time.Duration) time.Duration { return ds[pick(len(ds))] }

	c := Base(seed, msgs)
	c.Name = "random"
	c.PublishGap = dur(time.Millisecond, 5*time.Millisecond, 20*time.Millisecond)
	c.BrokerGap = 2 * dur(time.Millisecond, 5*time.Millisecond, 20*time.Millisecond)
	c.Burst = []float64{0, 0.3, 0.9}[pick(3)]
	c.QoS0 = []float64{0, 0.1}[pick(2)]
	c.QoS2 = []float64{0.2, 0.5, 0.9}[pick(3)]

	c.KeepAlive = time.Duration(1+pick(10)) * time.Second
	c.PingTimeout = dur(0, 0, time.Second, 2*c.KeepAlive)
	c.HealthyAfter = dur(time.Second, 5*time.Second)
	if chance(0.3) {
		c.AckTimeout = dur(time.Second, 5*time.Second)
	}
	c.MaxInflight = []int{1, 2, 10, 50, 500}[pick(5)]
	c.OfflineQueue = []int{0, 50, 1000}[pick(3)]
	switch pick(10) {
	case 0:
		c.Policy = reconnect.Never
	case 1:
		c.Policy = reconnect.AfterFirstSuccess
	}

	c.ReceiveMaximum = []uint16{0, 3, 20, 100}[pick(4)]
	c.ReceiveMaxVaries = chance(0.05)
	c.ClientReceiveMax = []uint16{0, 1, 5, 20}[pick(4)]
	if chance(0.2) {
		c.ServerKeepAlive = uint16(1 + pick(3))
	}
	switch pick(6) {
	case 0:
		c.SessionLoss = 1
	case 1:
		c.SessionLoss = 0.5
	case 2:
		c.SessionLoss = 0.2
	}

	c.MaxDelay = dur(2*time.Millisecond, 20*time.Millisecond, 100*time.Millisecond)
	c.MinDelay = c.MaxDelay / 10
	c.SpikeProb = []float64{0, 0.02}[pick(2)]
	c.NoticeMax = dur(10*time.Millisecond, 300*time.Millisecond, time.Second)
	c.CutMean = dur(0, 500*time.Millisecond, 2*time.Second, 10*time.Second)
	if chance(0.3) {
		c.StormLen = 3 + pick(5)
	}
	if chance(0.15) {
		c.CutEvery = 50 + pick(400)
	}
	if chance(0.5) {
		c.HalfOpenMean = dur(5*time.Second, 20*time.Second)
	}
	c.DialFail = []float64{0, 0.1, 0.4}[pick(3)]
	if chance(0.2) {
		c.BadPacketMean = 5 * time.Second
	}
	if chance(0.3) {
		c.ManualAcks = true
		c.AckDelay = dur(time.Millisecond, 50*time.Millisecond, 500*time.Millisecond)
	}
	if chance(0.4) {
		c.CrashMean = dur(3*time.Second, 10*time.Second)
		c.Store = chance(0.5)
	}
	if chance(0.2) {
		c.BrokerRestartMean = dur(2*time.Second, 10*time.Second)
	}
	// Drawn last, so that the fields above keep the values they had for
	// each seed before it existed.
	c.WakeAfterSend = chance(0.5)
	return c
}

// Scenario is a named configuration.
type Scenario struct {
	Name string
	Make func(seed uint64, msgs int) Config
}

// Scenarios are the named situations tested besides the random ones.
var Scenarios = []Scenario{
	{"steady-cuts", func(seed uint64, msgs int) Config {
		// Every connection is cut after 60 packets: the client must make
		// progress through a replay on each.
		c := Base(seed, msgs)
		c.CutMean, c.DialFail = 0, 0
		c.CutEvery = 60
		c.MaxInflight = 10
		c.HealthyAfter = time.Hour // never healthy: the back-off keeps growing to its maximum
		c.BackoffMax = 500 * time.Millisecond
		return c
	}},
	{"long-half-open", func(seed uint64, msgs int) Config {
		// Long keepalive, frequent silent paths: detection within
		// keepalive + ping timeout, measured in virtual time.
		c := Base(seed, msgs)
		c.KeepAlive, c.PingTimeout = 30*time.Second, 10*time.Second
		c.NoticeMax = 2 * time.Second
		c.CutMean, c.DialFail = 0, 0
		c.HalfOpenMean = 15 * time.Second
		c.PublishGap, c.BrokerGap = 50*time.Millisecond, 100*time.Millisecond
		return c
	}},
	{"broker-always-loses-session", func(seed uint64, msgs int) Config {
		// Session present = 0 on every reconnect: in-flight publishes are
		// requeued as new, QoS 2 after PUBREC complete, the subscription
		// is re-established first.
		c := Base(seed, msgs)
		c.SessionLoss = 1
		c.CutMean = time.Second
		c.QoS2 = 0.8
		return c
	}},
	{"replay-storm", func(seed uint64, msgs int) Config {
		// Many publishes in flight, then a storm of cuts a few packets
		// after each CONNACK, in the middle of the replay.
		c := Base(seed, msgs)
		c.MaxInflight, c.ReceiveMaximum, c.ClientReceiveMax = 500, 0, 0
		c.PublishGap, c.Burst = 20*time.Millisecond, 0.9
		c.MaxDelay = 100 * time.Millisecond
		c.CutMean = time.Second
		c.StormLen = 8
		c.SessionLoss = 0.2
		return c
	}},
	{"broker-restarts", func(seed uint64, msgs int) Config {
		// The broker restarts every second on average; half the time
		// without the session (no persistence).
		c := Base(seed, msgs)
		c.CutMean = 0
		c.BrokerRestartMean = time.Second
		c.SessionLoss = 0.5
		return c
	}},
	{"bad-broker", func(seed uint64, msgs int) Config {
		// The broker sends invalid packets: each must be refused with
		// ErrProtocol and cost only a reconnect.
		c := Base(seed, msgs)
		c.BadPacketMean = 500 * time.Millisecond
		return c
	}},
	{"crash-restart-store", func(seed uint64, msgs int) Config {
		// The client process is killed after a Commit, often before the
		// flush, and rebuilt from the store.
		c := Base(seed, msgs)
		c.CrashMean, c.Store = time.Second, true
		c.SessionLoss = 0.2
		return c
	}},
	{"policy-never", func(seed uint64, msgs int) Config {
		// Every loss ends the run; the application resumes from the
		// session in memory.
		c := Base(seed, msgs)
		c.Policy = reconnect.Never
		c.CutMean = time.Second
		return c
	}},
	{"window-of-one", func(seed uint64, msgs int) Config {
		// One message in flight each way.
		c := Base(seed, msgs/2)
		c.MaxInflight, c.ClientReceiveMax = 1, 1
		c.CutMean = time.Second
		c.HalfOpenMean = 10 * time.Second
		return c
	}},
	{"manual-acks", func(seed uint64, msgs int) Config {
		// The application acknowledges each message itself, late and out
		// of order, through cuts, lost sessions and process restarts.
		c := Base(seed, msgs)
		c.ManualAcks, c.AckDelay = true, 100*time.Millisecond
		c.CutMean, c.SessionLoss = time.Second, 0.3
		c.CrashMean, c.Store = 3*time.Second, seed%2 == 1
		c.QoS2 = 0.5
		return c
	}},
	{"everything", func(seed uint64, msgs int) Config {
		c := Base(seed, msgs)
		c.CutMean, c.StormLen, c.HalfOpenMean = time.Second, 3, 5*time.Second
		c.SessionLoss, c.DialFail = 0.3, 0.3
		c.BadPacketMean, c.CrashMean, c.Store = 5*time.Second, 3*time.Second, seed%2 == 0
		c.AckTimeout = 2 * time.Second
		c.SpikeProb = 0.05
		c.KeepAlive = 2 * time.Second
		return c
	}},
}

// Summary describes a configuration in one line.
func (c Config) Summary() string {
	return fmt.Sprintf("%s seed=%d msgs=%d/%d ka=%v pt=%v ack=%v inflight=%d rm=%d/%d vary=%v ska=%d policy=%v loss=%.1f "+
		"delay=%v-%v spike=%.2f notice<=%v cut=%v every=%d storm=%d half=%v dialfail=%.1f bad=%v crash=%v store=%v manual=%v/%v brokerrestart=%v wake=%v",
		c.Name, c.Seed, c.ClientPublishes, c.BrokerPublishes, c.KeepAlive, c.PingTimeout, c.AckTimeout, c.MaxInflight,
		c.ReceiveMaximum, c.ClientReceiveMax, c.ReceiveMaxVaries, c.ServerKeepAlive, c.Policy, c.SessionLoss,
		c.MinDelay, c.MaxDelay, c.SpikeProb, c.NoticeMax, c.CutMean, c.CutEvery, c.StormLen, c.HalfOpenMean,
		c.DialFail, c.BadPacketMean, c.CrashMean, c.Store, c.ManualAcks, c.AckDelay, c.BrokerRestartMean, c.WakeAfterSend)
}

// String summarizes a run's counts.
func (s Stats) String() string {
	return fmt.Sprintf("virtual %v, %d events, %d packets (%d vanished); %d connections, %d CONNACKs, %d sessions lost, %d dial failures; "+
		"%d cuts, %d half-open (longest detection %v), %d crash + %d save/load restarts, %d runs ended; "+
		"%d keepalive deaths, %d ack timeouts, %d broker keepalive closes, %d bad packets; "+
		"%d replayed, %d resubscribes, %d broker restarts, %d phantom sessions (%d messages swallowed), %d unknown acks, %d Ack errors, %d queue full; duplicates c→b QoS1 %d QoS2 %d, b→c QoS1 %d; "+
		"b→c lost with session %d, unrouted %d; %d poller waits, %d waits cut; settled %v after the script",
		s.Virtual.Round(time.Millisecond), s.Events, s.Packets, s.Vanished, s.Connections, s.Connacks, s.SessionsLost, s.DialFailures,
		s.Cuts, s.HalfOpens, s.MaxDetect, s.CrashRestarts, s.SaveLoadRestarts, s.RunsEnded,
		s.KeepaliveDeaths, s.AckTimeouts, s.BrokerKeepalive, s.BadPackets,
		s.Replayed, s.Resubscribes, s.BrokerRestarts, s.PhantomSessions, s.PhantomSwallowed, s.UnknownAcks, s.AckErrors, s.QueueFull, s.C2BDupQoS1, s.C2BDupQoS2, s.B2CDupQoS1,
		s.B2CLost, s.B2CUnrouted, s.PollerWaits, s.WaitsCut, s.Drain.Round(time.Millisecond))
}
