package sim

import (
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	flagSeeds  = flag.Int("seeds", 0, "seeds for TestSimulation (default 300, 30 with -short)")
	flagSweep  = flag.Bool("sweep", false, "TestSimulation runs 10,000 seeds (the sweep of the journal)")
	flagMsgs   = flag.Int("msgs", 0, "client publishes per seed (default 200, 100 with -short)")
	flagSeed   = flag.Uint64("seed", 0, "run only this seed in TestSimulation (any value, also beyond -seeds)")
	flagTrace  = flag.Bool("events", false, "print the whole event trace of each run")
	flagStrict = flag.Bool("strict", false, "make the known issue a violation (Config.Strict)")
)

func seedsAndMsgs() (int, int) {
	seeds, msgs := 300, 200
	if testing.Short() {
		seeds, msgs = 30, 100
	}
	if *flagSweep {
		seeds = 10000
	}
	if *flagSeeds > 0 {
		seeds = *flagSeeds
	}
	if *flagMsgs > 0 {
		msgs = *flagMsgs
	}
	return seeds, msgs
}

// simulate runs cfg in a synctest bubble of its own.
func simulate(t *testing.T, cfg Config) *Result {
	t.Helper()
	var res *Result
	synctest.Test(t, func(*testing.T) { res = Run(cfg) })
	return res
}

// check runs cfg and fails t with everything needed to replay it.
func check(t *testing.T, cfg Config, replay string) *Result {
	t.Helper()
	cfg.Trace = *flagTrace
	cfg.Strict = cfg.Strict || *flagStrict
	res := simulate(t, cfg)
	if *flagTrace {
		t.Log("trace:\n" + strings.Join(res.Trace, "\n"))
	}
	if len(res.Violations) == 0 {
		return res
	}
	// Replay the same seed with a text trace: a run is a function of its
	// configuration, so it fails the same way.
	cfg.Trace = true
	again := simulate(t, cfg)
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
// the real eventloop.EventLoop, in the virtual time of a synctest bubble,
// against a broker model through a simulated network with cuts, half-open
// periods, delays, failed dials, lost broker sessions, broker restarts,
// invalid packets and process restarts. See the package documentation for
// the invariants.
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
			res := check(t, Random(seed, msgs), fmt.Sprintf("go test ./internal/sim -run TestSimulation -seed=%d -msgs=%d -v  (add -events for the whole event trace)", seed, msgs))
			if testing.Verbose() {
				t.Logf("%s\ntrace hash %016x\n%v", res.Config.Summary(), res.Hash, res.Stats)
			}
			addStats(&total, res.Stats)
		})
	}
	t.Cleanup(func() {
		t.Logf("%d seeds × %d publishes in %v: %v", len(list), msgs, time.Since(start).Round(time.Millisecond), total)
	})
}

var statsMu sync.Mutex

// addStats adds s to total, from parallel subtests.
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
	total.Resubscribes += s.Resubscribes
	total.BrokerRestarts += s.BrokerRestarts
	total.C2BDupQoS1 += s.C2BDupQoS1
	total.C2BDupQoS2 += s.C2BDupQoS2
	total.B2CDupQoS1 += s.B2CDupQoS1
	total.B2CLost += s.B2CLost
	total.B2CUnrouted += s.B2CUnrouted
	total.PhantomSessions += s.PhantomSessions
	total.PhantomSwallowed += s.PhantomSwallowed
	total.UnknownAcks += s.UnknownAcks
	total.AckErrors += s.AckErrors
	total.QueueFull += s.QueueFull
	total.PollerWaits += s.PollerWaits
	total.WaitsCut += s.WaitsCut
	total.Drain = max(total.Drain, s.Drain)
}

// TestScenarios runs the named scenarios, a few seeds each.
func TestScenarios(t *testing.T) {
	_, msgs := seedsAndMsgs()
	seeds := 3
	if testing.Short() {
		seeds = 1
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
				res := check(t, cfg, fmt.Sprintf("go test ./internal/sim -run 'TestScenarios/^%s$/^seed=%d$' -msgs=%d -v", sc.Name, seed, msgs))
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
		cfg := Random(seed, msgs)
		a, b := simulate(t, cfg), simulate(t, cfg)
		if a.Hash != b.Hash {
			t.Errorf("seed %d: trace hash %x, then %x", seed, a.Hash, b.Hash)
		}
		cfg.Trace = true
		c, d := simulate(t, cfg), simulate(t, cfg)
		if c.Hash != a.Hash {
			t.Errorf("seed %d: the text trace changed the run (hash %x, was %x)", seed, c.Hash, a.Hash)
		}
		if strings.Join(c.Trace, "\n") != strings.Join(d.Trace, "\n") {
			t.Errorf("seed %d: text traces differ", seed)
		}
		if a.Stats != b.Stats {
			t.Errorf("seed %d: stats differ:\n%v\n%v", seed, a.Stats, b.Stats)
		}
		other := simulate(t, Random(seed+1, msgs))
		if other.Hash == a.Hash {
			t.Errorf("seeds %d and %d have the same trace hash", seed, seed+1)
		}
		t.Logf("seed %d: %d events, trace hash %016x", seed, a.Stats.Events, a.Hash)
	}
}

// TestInvariantsCatchBugs breaks the broker or the network on purpose and
// checks that the invariants notice: a simulation that passes whatever
// happens proves nothing. (Bugs planted in the loop itself are recorded in
// the journal.)
func TestInvariantsCatchBugs(t *testing.T) {
	cases := []struct {
		name string
		mut  mutation
		make func(seed uint64) Config
		want string // a violation must contain this
	}{
		{"broker without QoS 2 dedup", mutNoDedup, func(seed uint64) Config {
			c := Base(seed, 300)
			c.CutMean, c.QoS2, c.DialFail = 500*time.Millisecond, 0.9, 0
			return c
		}, "QoS 2 message"},
		{"broker that does not resend", mutNoResend, func(seed uint64) Config {
			c := Base(seed, 300)
			c.CutMean, c.Drain = 500*time.Millisecond, time.Minute
			return c
		}, "did not settle"},
		{"network that duplicates a segment", mutDupSegment, func(seed uint64) Config {
			c := Base(seed, 300)
			c.CutMean, c.DialFail = 0, 0
			return c
		}, "out of order"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 10; seed++ {
				cfg := tc.make(seed)
				cfg.mutation = tc.mut
				res := simulate(t, cfg)
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

// TestKnownIssues shows that the known issue still happens (it logs a seed
// that reproduces it). When it no longer reproduces, it fails: make it a
// violation by default and remove it from Strict and from this test.
func TestKnownIssues(t *testing.T) {
	const want = "session present = 1 for broker session"
	for seed := uint64(1); seed <= 200; seed++ {
		cfg := Base(seed, 1000)
		cfg.SessionLoss, cfg.StormLen, cfg.CutMean, cfg.NoticeMax = 1, 5, time.Second, 10*time.Millisecond
		cfg.Strict = true
		res := simulate(t, cfg)
		for _, v := range res.Violations {
			if strings.Contains(v, want) {
				t.Logf("phantom session reproduces with seed %d (%s):\n  %s", seed, cfg.Summary(), v)
				return
			}
		}
	}
	t.Errorf("the phantom session no longer reproduces in seeds 1-200 under Strict; if it was fixed, make it a violation by default")
}

// regressions are seeds that found bugs in the loop, replayed with the
// configuration that found them (Random(seed, msgs)).
var regressions = []struct {
	seed uint64
	msgs int
	late bool // Config.LateRequests
	bug  string
}{
	{231, 200, false, "requests taken into the session during the back-off were committed only after the wait: a process killed during it (or at the CONNECT that followed) lost them"},
	{1471, 200, true, "publishes queued in the step that declared the connection lost (ack timeout, keepalive) were marked sent but never flushed: the next connection sent them with DUP set"},
	{1721, 200, true, "the same (ack timeout)"},
	{1748, 200, true, "the same"},
}

// TestRegressions replays the seeds that found bugs in the loop.
func TestRegressions(t *testing.T) {
	for _, r := range regressions {
		t.Run(fmt.Sprintf("seed=%d", r.seed), func(t *testing.T) {
			t.Parallel()
			cfg := Random(r.seed, r.msgs)
			cfg.LateRequests = r.late
			check(t, cfg, fmt.Sprintf("go test ./internal/sim -run TestRegressions/seed=%d -v  (%s)", r.seed, r.bug))
		})
	}
}
