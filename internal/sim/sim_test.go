package sim

import (
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	flagSeeds  = flag.Int("sim.seeds", 0, "seeds for TestSimulation (default 200, 20 with -short)")
	flagMsgs   = flag.Int("sim.msgs", 0, "client publishes per seed (default 2000, 500 with -short)")
	flagSeed   = flag.Uint64("sim.seed", 0, "run only this seed in TestSimulation (any value, also beyond -sim.seeds)")
	flagTrace  = flag.Bool("sim.trace", false, "print the whole event trace of each run")
	flagStrict = flag.Bool("sim.strict", false, "make the known issues violations (Config.Strict)")
)

func seedsAndMsgs() (int, int) {
	seeds, msgs := 200, 2000
	if testing.Short() {
		seeds, msgs = 20, 500
	}
	if *flagSeeds > 0 {
		seeds = *flagSeeds
	}
	if *flagMsgs > 0 {
		msgs = *flagMsgs
	}
	return seeds, msgs
}

// check runs cfg and fails t with everything needed to replay it.
func check(t *testing.T, cfg Config, replay string) *Result {
	t.Helper()
	cfg.Trace = *flagTrace
	cfg.Strict = cfg.Strict || *flagStrict
	res := Run(cfg)
	if *flagTrace {
		t.Log("trace:\n" + strings.Join(res.Trace, "\n"))
	}
	if len(res.Violations) == 0 {
		return res
	}
	// Replay the same seed with a text trace: a run is a function of its
	// configuration, so it fails the same way.
	cfg.Trace = true
	again := Run(cfg)
	tail := again.Trace
	if len(tail) > 120 {
		tail = tail[len(tail)-120:]
	}
	t.Errorf("%s\n%d violations:\n  %s\nstats: %v\nlast events:\n%s\nreplay: %s",
		cfg.Summary(), len(res.Violations), strings.Join(res.Violations, "\n  "), res.Stats,
		strings.Join(tail, "\n"), replay)
	if again.Hash != res.Hash {
		t.Errorf("the replay with a text trace diverged (hash %x, was %x)", again.Hash, res.Hash)
	}
	return res
}

// TestSimulation runs many seeds, each a random configuration (Random):
// the real MqttState, keepalive.Timer and reconnect.Schedule against a
// broker model through a scripted network with cuts, half-open periods,
// delays, failed dials, lost broker sessions, invalid packets and process
// restarts. See the package documentation for the invariants.
func TestSimulation(t *testing.T) {
	seeds, msgs := seedsAndMsgs()
	list := make([]uint64, 0, seeds)
	if *flagSeed != 0 {
		list = append(list, *flagSeed)
	} else {
		for s := 1; s <= seeds; s++ {
			list = append(list, uint64(s))
		}
	}
	start := time.Now()
	var total Stats
	for _, seed := range list {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			res := check(t, Random(seed, msgs), fmt.Sprintf("go test ./internal/sim -run 'TestSimulation/^seed=%d$' -v  (or: -run TestSimulation -sim.seed=%d -sim.msgs=%d -sim.trace)", seed, seed, msgs))
			if testing.Verbose() {
				t.Logf("%s\n%v", res.Config.Summary(), res.Stats)
			}
			addStats(&total, res.Stats)
		})
	}
	t.Cleanup(func() {
		t.Logf("%d seeds × %d publishes in %v: %v", len(list), msgs, time.Since(start).Round(time.Millisecond), total)
	})
}

// addStats is only called from parallel subtests through the mutex-free
// path below; see statsMu.
func addStats(total *Stats, s Stats) {
	statsMu.Lock()
	defer statsMu.Unlock()
	total.Virtual += s.Virtual
	total.Events += s.Events
	total.Packets += s.Packets
	total.Vanished += s.Vanished
	total.Connections += s.Connections
	total.Connacks += s.Connacks
	total.SessionsLost += s.SessionsLost
	total.DialFailures += s.DialFailures
	total.Cuts += s.Cuts
	total.HalfOpens += s.HalfOpens
	total.CrashRestarts += s.CrashRestarts
	total.SaveLoadRestarts += s.SaveLoadRestarts
	total.RunsEnded += s.RunsEnded
	total.KeepaliveDeaths += s.KeepaliveDeaths
	total.AckTimeouts += s.AckTimeouts
	total.BrokerKeepalive += s.BrokerKeepalive
	total.BadPackets += s.BadPackets
	total.MaxDetect = max(total.MaxDetect, s.MaxDetect)
	total.Replayed += s.Replayed
	total.Requeued += s.Requeued
	total.CompletedOnLoss += s.CompletedOnLoss
	total.Resubscribes += s.Resubscribes
	total.C2BDupQoS1 += s.C2BDupQoS1
	total.C2BDupQoS2 += s.C2BDupQoS2
	total.B2CDupQoS1 += s.B2CDupQoS1
	total.B2CLost += s.B2CLost
	total.B2CUnrouted += s.B2CUnrouted
	total.PhantomSessions += s.PhantomSessions
	total.PhantomSwallowed += s.PhantomSwallowed
	total.ReplayOverReceiveMax += s.ReplayOverReceiveMax
	total.UnknownAcks += s.UnknownAcks
	total.StaleAcks += s.StaleAcks
	total.AckErrors += s.AckErrors
	total.Drain = max(total.Drain, s.Drain)
}

// TestScenarios runs the named scenarios, a few seeds each.
func TestScenarios(t *testing.T) {
	_, msgs := seedsAndMsgs()
	seeds := 5
	if testing.Short() {
		seeds = 2
	}
	if *flagSeeds > 0 {
		seeds = *flagSeeds
	}
	for _, sc := range Scenarios {
		for seed := uint64(1); seed <= uint64(seeds); seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", sc.Name, seed), func(t *testing.T) {
				t.Parallel()
				cfg := sc.Make(seed, msgs)
				cfg.Name = sc.Name
				res := check(t, cfg, fmt.Sprintf("go test ./internal/sim -run 'TestScenarios/^%s$/^seed=%d$' -v -sim.msgs=%d", sc.Name, seed, msgs))
				if testing.Verbose() {
					t.Logf("%v", res.Stats)
				}
			})
		}
	}
}

// TestDeterminism: a seed is a replayable run. The same configuration
// gives the identical event trace (hash and text), with or without the
// text trace; another seed gives another trace.
func TestDeterminism(t *testing.T) {
	_, msgs := seedsAndMsgs()
	for _, seed := range []uint64{7, 42, 1234} {
		cfg := Random(seed, msgs/2)
		a, b := Run(cfg), Run(cfg)
		if a.Hash != b.Hash {
			t.Errorf("seed %d: trace hash %x, then %x", seed, a.Hash, b.Hash)
		}
		cfg.Trace = true
		c, d := Run(cfg), Run(cfg)
		if c.Hash != a.Hash {
			t.Errorf("seed %d: the text trace changed the run (hash %x, was %x)", seed, c.Hash, a.Hash)
		}
		if strings.Join(c.Trace, "\n") != strings.Join(d.Trace, "\n") {
			t.Errorf("seed %d: text traces differ", seed)
		}
		if a.Stats != b.Stats {
			t.Errorf("seed %d: stats differ:\n%v\n%v", seed, a.Stats, b.Stats)
		}
		other := Run(Random(seed+1, msgs/2))
		if other.Hash == a.Hash {
			t.Errorf("seeds %d and %d have the same trace hash", seed, seed+1)
		}
		t.Logf("seed %d: %d events, trace hash %016x", seed, a.Stats.Events, a.Hash)
	}
}

var statsMu sync.Mutex

// TestInvariantsCatchBugs breaks the broker model or the client harness on
// purpose and checks that the invariants notice: a simulation that passes
// whatever happens proves nothing.
func TestInvariantsCatchBugs(t *testing.T) {
	cases := []struct {
		name string
		mut  mutation
		make func(seed uint64) Config
		want string // a violation must contain this
	}{
		{"broker without QoS 2 dedup", mutNoDedup, func(seed uint64) Config {
			c := Base(seed, 1000)
			c.CutMean, c.QoS2, c.DialFail = 500*time.Millisecond, 0.9, 0
			return c
		}, "QoS 2 message"},
		{"broker that does not resend", mutNoResend, func(seed uint64) Config {
			c := Base(seed, 1000)
			c.CutMean, c.Drain = 500*time.Millisecond, time.Minute
			return c
		}, "did not settle"},
		{"client that never pings", mutNoPing, func(seed uint64) Config {
			c := Base(seed, 20)
			c.PublishGap, c.BrokerGap, c.KeepAlive = 3*time.Second, 3*time.Second, 2*time.Second
			c.CutMean, c.DialFail = 0, 0
			return c
		}, "broker's keepalive expired on the healthy connection"},
		{"client that does not replay", mutDropReplay, func(seed uint64) Config {
			c := Base(seed, 1000)
			c.CutMean, c.Drain = 500*time.Millisecond, time.Minute
			return c
		}, ""},
		{"client that flushes before it commits", mutFlushThenCommit, func(seed uint64) Config {
			c := Base(seed, 1000)
			c.Store, c.CrashMean, c.QoS2 = true, 200*time.Millisecond, 0.9
			c.CutMean, c.DialFail = 0, 0
			return c
		}, ""},
		{"client that ignores the back-off", mutIgnoreSchedule, func(seed uint64) Config {
			c := Base(seed, 1000)
			c.CutMean = 500 * time.Millisecond
			return c
		}, "connection attempt at"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 10; seed++ {
				cfg := tc.make(seed)
				cfg.mutation = tc.mut
				res := Run(cfg)
				for _, v := range res.Violations {
					if strings.Contains(v, tc.want) {
						t.Logf("seed %d: %s", seed, v)
						return
					}
				}
			}
			t.Errorf("no seed in 1-10 produced a violation containing %q", tc.want)
		})
	}
}

// knownIssues are behaviours of the packages under test that the
// simulation found and that break what a user could expect; by default
// the simulation counts them (Stats) instead of failing. Under Strict they
// are violations. See the package documentation.
var knownIssues = []struct {
	name string
	make func(seed uint64) Config
	want string
}{
	{"phantom session: session present after a lost CONNACK", func(seed uint64) Config {
		c := Base(seed, 1000)
		c.SessionLoss, c.StormLen, c.CutMean, c.NoticeMax = 1, 5, time.Second, 10*time.Millisecond
		return c
	}, "session present = 1 for broker session"},
	{"stale manual ack after a lost session", func(seed uint64) Config {
		c := Base(seed, 1000)
		c.ManualAcks, c.AckDelay, c.SessionLoss, c.CutMean = true, 500*time.Millisecond, 0.5, time.Second
		return c
	}, "acknowledged message"},
}

// TestKnownIssues shows that each known issue still happens (it logs a
// seed that reproduces it, with the replay command). When one no longer
// reproduces, it fails: make it a violation by default (remove it from
// Strict) and from this list.
func TestKnownIssues(t *testing.T) {
	for _, ki := range knownIssues {
		t.Run(ki.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 30; seed++ {
				cfg := ki.make(seed)
				cfg.Strict = true
				res := Run(cfg)
				for _, v := range res.Violations {
					if strings.Contains(v, ki.want) {
						t.Logf("reproduces with seed %d (%s):\n  %s\nevents before it:\n%s",
							seed, cfg.Summary(), v, traceBefore(cfg, v, 40))
						return
					}
				}
			}
			t.Errorf("%s: no longer reproduces in seeds 1-30 under Strict; if it was fixed, make it a violation by default", ki.name)
		})
	}
}

// traceBefore replays cfg with a text trace and returns the n events
// before the violation v.
func traceBefore(cfg Config, v string, n int) string {
	cfg.Trace = true
	lines := Run(cfg).Trace
	for i, l := range lines {
		if strings.HasPrefix(l, "!!! "+v) {
			return strings.Join(lines[max(0, i-n):i+1], "\n")
		}
	}
	return "(not found in the replay)"
}
