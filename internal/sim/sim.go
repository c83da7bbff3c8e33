package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing/synctest"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state"
)

// Config is one simulated run. Everything random in a run is drawn from
// Seed; the same Config always produces the same run, event for event.
type Config struct {
	Seed uint64
	Name string // for reports only

	// Workload. The client's application publishes ClientPublishes
	// messages (topic "c2b"), one every PublishGap on average, and
	// subscribes to "b2c" first; "other clients" publish BrokerPublishes
	// messages to "b2c" through the broker, one every BrokerGap.
	ClientPublishes int
	BrokerPublishes int
	PublishGap      time.Duration
	BrokerGap       time.Duration
	Burst           float64 // probability that a request comes at the same instant as the previous one
	QoS0, QoS2      float64 // shares of QoS 0 and QoS 2 messages; the rest are QoS 1

	// The event loop's options (eventloop.Options).
	KeepAlive      time.Duration // whole seconds
	PingTimeout    time.Duration // 0: the keepalive
	ConnectTimeout time.Duration
	HealthyAfter   time.Duration // a connection up this long resets the back-off
	AckTimeout     time.Duration // 0: none
	MaxInflight    int
	OfflineQueue   int // Options.MaxQueued (0: no bound)
	Policy         reconnect.Policy
	AppRestart     time.Duration // a run ended by the policy is resumed from its State by a new loop after this
	// WakeAfterSend sets Options.WakeAfterSend: the driver calls
	// EventLoop.Wake after each request it puts in the requests channel,
	// and the loop waits for the broker in memConn.WaitReadable (its
	// poller wait) rather than in a select over Arm's readiness.
	WakeAfterSend bool
	// LateRequests (with WakeAfterSend) leaves out the Wake, as an
	// application that breaks the promise would: a request is then taken
	// when the loop next wakes, often for a timer. With default options
	// that happens in real time when a request and a timer are ready at
	// once; the virtual clock alone never makes it so.
	LateRequests bool

	// Reconnect back-off (Options.BackOff): exponential from
	// BackoffInitial, doubling up to BackoffMax, each delay jittered by
	// ±BackoffJitter, drawn from the seed.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	BackoffJitter  float64

	// Broker.
	ReceiveMaximum   uint16  // Receive Maximum in CONNACK (0: absent)
	ReceiveMaxVaries bool    // draw it anew for each connection
	ClientReceiveMax uint16  // Receive Maximum in CONNECT (what the broker may have in flight to the client)
	ServerKeepAlive  uint16  // seconds, Server Keep Alive in CONNACK (0: absent)
	SessionLoss      float64 // probability that the broker has lost the session at a reconnect

	// Network.
	MinDelay, MaxDelay   time.Duration // per-packet delay
	SpikeProb            float64       // probability of an extra delay of up to SpikeMax
	SpikeMax             time.Duration
	NoticeMin, NoticeMax time.Duration // how long a peer takes to learn that its connection ended
	CutMean              time.Duration // mean time between cuts of the client's connection (0: none)
	CutEvery             int           // cut every connection after this many packets (0: no)
	StormLen             int           // after each random cut, the next StormLen connections are cut a few packets after CONNACK (mid-replay)
	// HalfOpenMean is the mean time between half-open periods: one or
	// both directions of the client's established connection go silent,
	// without anyone being told, until a keepalive finds out. Detection is
	// asserted within keepalive + ping timeout of the moment the path went
	// silent (broker→client silent: the client's keepalive), or within
	// 1.5 × keepalive + MaxDelay + SpikeMax + NoticeMax when only
	// client→broker is silent (the broker's keepalive closes the connection
	// and the client is told) if that is larger.
	HalfOpenMean  time.Duration
	DialFail      float64       // probability that a connection attempt fails (half refused, half unanswered)
	BadPacketMean time.Duration // mean time between invalid packets injected by the broker (0: none)

	// ManualAcks: the application acknowledges each QoS 1 and 2 message
	// itself (Options.ManualAcks, Message.Ack sent as a request), AckDelay
	// on average after it was delivered, in any order.
	ManualAcks bool
	AckDelay   time.Duration

	// Client process.
	CrashMean time.Duration // mean time between client process restarts (0: none)
	// Store: the loop keeps its session in a state.MemoryStore
	// (Options.Store); a restart is a kill (SIGKILL) at the loop's next
	// write (after its Commit, just before or after the bytes reach the
	// wire) or, if it
	// writes nothing for 10 ms, while it waits, and the new process
	// rebuilds the session from what the store held at the kill. Without:
	// a restart closes the loop and continues from its State through
	// Save and Load.
	Store bool

	// BrokerRestartMean is the mean time between broker restarts: the
	// broker closes every connection, and loses the session with
	// probability SessionLoss (a broker without persistence: 1).
	BrokerRestartMean time.Duration

	// Strict makes the known issue a violation: a phantom session
	// (Stats.PhantomSessions). Without it, it is counted.
	Strict bool

	Drain time.Duration // after the script ends, how long everything may take to settle
	Trace bool          // keep a text trace (Result.Trace)

	// mutation breaks the broker or the network on purpose, to show
	// that the invariants catch it (tests only).
	mutation mutation
}

type mutation int

const (
	mutNone       mutation = iota
	mutNoDedup             // broker: no QoS 2 dedup (delivers every PUBLISH)
	mutNoResend            // broker: no resend of unacknowledged messages on session present
	mutDupSegment          // network: delivers a client segment twice (TCP never does)
)

// Stats are counts from a run.
type Stats struct {
	Virtual time.Duration // virtual time simulated
	Events  int
	Packets int // packets written on live connections
	// Vanished: written on a connection already closed (unknown to the
	// writer) or into a silent path.
	Vanished int

	Connections, Connacks, SessionsLost, DialFailures int
	Cuts, HalfOpens, CrashRestarts, SaveLoadRestarts  int
	RunsEnded                                         int // runs ended by the policy and resumed from State
	KeepaliveDeaths, AckTimeouts, BrokerKeepalive     int
	BadPackets                                        int
	MaxDetect                                         time.Duration // longest half-open detection

	Replayed       int // DUP publishes and PUBRELs the loop wrote after session-present CONNACKs
	Resubscribes   int // subscriptions the loop re-established after a lost session
	BrokerRestarts int

	C2BDupQoS1, C2BDupQoS2 int // duplicate deliveries at the broker (QoS 2: only after a lost session)
	B2CDupQoS1             int
	B2CLost, B2CUnrouted   int // broker→client messages lost with a broker session, or never routed (no subscription)

	// PhantomSessions: CONNACKs with session present = 1 for a broker
	// session the client never learnt about (created at a CONNECT whose
	// CONNACK was lost, after the broker had lost the previous one).
	PhantomSessions int
	// PhantomSwallowed: messages to the client acknowledged without being
	// delivered in a phantom session (taken for duplicates of the lost
	// session's messages that had the same packet id).
	PhantomSwallowed int
	// UnknownAcks: PUBACK/PUBREC from the client for ids the broker has
	// no message for (manual acks written for an earlier session).
	UnknownAcks int
	// QueueFull: QueueFull notifications (the offline queue reached
	// Config.OfflineQueue).
	QueueFull int
	// AckErrors: the loop refused an application's ack (RequestFailed:
	// ErrStaleAck for a message of a lost broker session, an id the
	// session forgot).
	AckErrors int

	// PollerWaits: the loop's waits for the broker in
	// memConn.WaitReadable (Config.WakeAfterSend); WaitsCut: waits
	// (ReadWait or WaitReadable) that memConn.InterruptWait ended.
	PollerWaits, WaitsCut int

	Drain time.Duration // from the end of the script to quiescence
}

// Result is the outcome of one run.
type Result struct {
	Config     Config
	Hash       uint64 // of the event trace: equal for equal configurations
	Violations []string
	Stats      Stats
	Trace      []string // with Config.Trace
}

const maxViolations = 20

// Sim is one run: the network, the broker and the script, driven in the
// virtual time of a testing/synctest bubble, around a real
// eventloop.EventLoop that runs on its own goroutine as an application
// would run it.
//
// Determinism: the driver (Run's goroutine) acts only when every other
// goroutine of the bubble is durably blocked (synctest.Wait), that is when
// the loop waits for bytes, a request or a timer; the loop runs only
// while the driver sleeps. The two never run at once, so a run is a
// function of its seed.
type Sim struct {
	cfg Config
	rng *rand.Rand

	mu      sync.Mutex // guards everything below, and every memConn
	t0      time.Time
	now     time.Duration
	seq     uint64
	queue   eventQueue
	driving bool          // the driver is running events
	kick    chan struct{} // an event was scheduled from the loop's goroutine
	post    []func()      // to run once s.mu is released

	brk *broker

	nconns    int
	inflight  int // message-flow packets on the wire
	halfOpens []*halfOpen
	badConns  []*conn
	storm     int
	faultsOn  bool
	scriptEnd time.Duration
	done      bool
	// unsettledEnd: the drain period ended before everything settled.
	unsettledEnd bool

	// The client: the application around the event loop.
	ctx          context.Context
	cancel       context.CancelFunc
	loop         *eventloop.EventLoop // the current process's loop
	loops        int                  // loops created
	proc         int                  // client process number (a kill starts a new one)
	cur          *conn                // the connection the loop dialed last
	kaInterval   time.Duration        // keepalive in force on the current (or last) connection
	store        *state.MemoryStore
	crashPending bool
	killing      bool   // the process is being killed
	killSaved    []byte // the committed session at the kill (store mode)
	restart      chan struct{}
	reqs         chan eventloop.Request
	pending      []eventloop.Request // arrived, waiting for room in reqs
	acksOut      int                 // manual acks scheduled, not yet in reqs
	model        backoffModel
	upAt         time.Duration
	dialAt       time.Duration // when the next attempt is due (-1: no expectation)
	knownInc     int           // the broker session of the last CONNACK that reached the client
	epoch        int           // bumped by each CONNACK with session present = 0 that reached the client
	subscribed   bool          // a SUBACK reached the client
	written      map[uint64]writtenAt
	acks         map[eventloop.Ack]uint64 // the message each Ack request acknowledges

	c2b []c2bRec // by message number (1-based)
	b2c []b2cRec

	hash  uint64
	lines []string
	viol  []string
	stats Stats
}

// writtenAt is where the loop last wrote a publish: in which of the broker
// sessions it knows of, with which packet id.
type writtenAt struct {
	epoch int
	id    uint16
}

// c2bRec follows one client→broker message.
type c2bRec struct {
	qos       byte
	delivered int32 // by the broker to its subscribers
	completed int32 // Published at the client
	// atRisk: the broker lost its session while holding the message's
	// QoS 2 packet id unreleased. If the client had not yet seen PUBREC
	// it sends the message again as a new one: MQTT 5 cannot deliver it
	// exactly once then.
	atRisk bool
}

// b2cRec follows one broker→client message.
type b2cRec struct {
	qos       byte
	delivered int32 // to the client's application
	// appAcked: acknowledged by the application (with automatic acks: on
	// delivery; with manual acks: an Ack request the loop did not refuse).
	appAcked int32
	lastProc int   // the client process it was last delivered to
	acked    int32 // flow completed at the broker
	routed   bool  // the client's session was subscribed when it was published
	lost     bool  // the broker lost the session before the flow completed
}

// Run simulates cfg and checks the invariants. It must be called inside a
// testing/synctest bubble (synctest.Test), which supplies the virtual
// clock; it returns when the run has settled or failed, with every
// goroutine it started ended.
func Run(cfg Config) *Result {
	s := &Sim{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		hash:    14695981039346656037,
		t0:      time.Now(),
		kick:    make(chan struct{}, 1),
		restart: make(chan struct{}, 1),
		dialAt:  -1,
		written: make(map[uint64]writtenAt),
		acks:    make(map[eventloop.Ack]uint64),
	}
	s.brk = newBroker(s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	s.script()
	s.mu.Unlock()
	appDone := make(chan struct{})
	go func() {
		defer close(appDone)
		s.app()
	}()
	s.drive()
	s.cancel()
	<-appDone
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finalChecks()
	s.stats.Virtual = s.now
	return &Result{Config: cfg, Hash: s.hash, Violations: s.viol, Stats: s.stats, Trace: s.lines}
}

// drive runs the events, each at its virtual time, while the loop is
// blocked.
func (s *Sim) drive() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		synctest.Wait() // the loop is waiting
		s.mu.Lock()
		s.tick()
		s.driving = true
		s.checkBadConns()
		for len(s.queue) > 0 && s.queue[0].at <= s.now && !s.done && len(s.viol) < maxViolations {
			ev := s.queue.pop()
			s.stats.Events++
			ev.fn()
		}
		s.feed()
		s.driving = false
		stop := s.done || len(s.viol) >= maxViolations || len(s.queue) == 0
		var next time.Duration
		if !stop {
			next = s.queue[0].at - s.now
		}
		post := s.takePost()
		s.mu.Unlock()
		for _, f := range post {
			f()
		}
		if stop {
			return
		}
		timer.Reset(next)
		select {
		case <-timer.C:
		case <-s.kick:
		}
	}
}

// takePost returns what must run once s.mu is released.
func (s *Sim) takePost() []func() {
	p := s.post
	s.post = nil
	return p
}

// feed moves arrived requests into the loop's request channel while it
// has room. The driver is not the goroutine that calls Next, so with
// Config.WakeAfterSend it keeps the application's promise: a Wake after
// the sends.
func (s *Sim) feed() {
	sent := false
	for len(s.pending) > 0 && len(s.reqs) < cap(s.reqs) {
		s.reqs <- s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		sent = true
	}
	if sent {
		s.wakeLoop()
	}
}

// wakeLoop calls EventLoop.Wake after a send on the requests channel from
// the driver, when Config.WakeAfterSend is on (s.mu held: Wake only cuts
// a park, through memConn.InterruptWait, which does not take s.mu).
// s.loop is the loop the application runs or is about to run (app sets it
// before Run); when it is not running, Wake finds no park to cut and does
// nothing, and the next Run looks at the channel before it waits.
func (s *Sim) wakeLoop() {
	if s.cfg.WakeAfterSend && !s.cfg.LateRequests && s.loop != nil {
		s.loop.Wake()
	}
}

// checkBadConns: a connection on which an invalid packet reached the loop
// must be closed by the time the loop waits again.
func (s *Sim) checkBadConns() {
	for _, c := range s.badConns {
		if !c.cli.closed && c.cli.proc == s.proc && !s.killing {
			s.violation("the loop received an invalid packet on connection %d and went on waiting on it", c.id)
		}
	}
	s.badConns = s.badConns[:0]
}

// script schedules the workload and the fault processes.
func (s *Sim) script() {
	cfg := &s.cfg
	qos := func() byte {
		switch f := s.rng.Float64(); {
		case f < cfg.QoS0:
			return 0
		case f < cfg.QoS0+cfg.QoS2:
			return 2
		}
		return 1
	}
	// The client's application: subscribe, then publish.
	s.reqs = make(chan eventloop.Request, 256)
	s.at(0, func() {
		s.pending = append(s.pending, eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "b2c", QoS: 2}}})
	})
	s.c2b = make([]c2bRec, cfg.ClientPublishes+1)
	t := time.Duration(0)
	for m := 1; m <= cfg.ClientPublishes; m++ {
		if s.rng.Float64() >= cfg.Burst {
			t += s.exp(cfg.PublishGap)
		}
		q := qos()
		s.c2b[m].qos = q
		s.at(t, func() {
			s.pending = append(s.pending, eventloop.Publish{Topic: "c2b", QoS: q, Payload: payload(uint64(m))})
		})
	}
	s.scriptEnd = t
	// Other clients publishing to the client's subscription.
	s.b2c = make([]b2cRec, cfg.BrokerPublishes+1)
	t = 50 * time.Millisecond
	for m := 1; m <= cfg.BrokerPublishes; m++ {
		if s.rng.Float64() >= cfg.Burst {
			t += s.exp(cfg.BrokerGap)
		}
		s.b2c[m].qos = qos()
		s.at(t, func() { s.brk.publish(uint64(m)) })
	}
	s.scriptEnd = max(s.scriptEnd, t)

	s.faultsOn = true
	s.at(s.scriptEnd, func() {
		s.faultsOn = false
		s.note(tQuiet, nil, 0, nil)
		s.drainCheck()
	})
	s.poisson(cfg.CutMean, func() {
		if c := s.cur; c != nil && c.open {
			s.cut(c, "network cut")
			s.storm = cfg.StormLen
		}
	})
	s.poisson(cfg.HalfOpenMean, func() {
		if c := s.cur; c != nil && c.clientUp && c.half == nil && healthy(c) {
			dirs := [...][2]bool{{true, true}, {true, false}, {false, true}}[s.rng.IntN(3)]
			s.silence(c, dirs)
		}
	})
	s.poisson(cfg.BadPacketMean, func() {
		if c := s.brk.conn; c != nil && c.brokerUp && c.open {
			s.stats.BadPackets++
			p, raw := badPacket(s.rng.IntN(5))
			s.sendBroker(c, p, raw, true)
		}
	})
	s.poisson(cfg.BrokerRestartMean, func() { s.brk.restart() })
	s.poisson(cfg.CrashMean, func() {
		// The process dies at its next write (after its Commit, before
		// the bytes reach the wire), or in 10 ms while it waits.
		if s.crashPending || s.killing {
			return
		}
		s.crashPending = true
		s.after(10*time.Millisecond, func() {
			if s.crashPending {
				s.kill(false)
			}
		})
	})
}

// poisson runs fn at exponentially distributed intervals while faults are
// on (mean 0: never).
func (s *Sim) poisson(mean time.Duration, fn func()) {
	if mean <= 0 {
		return
	}
	var next func()
	next = func() {
		if !s.faultsOn {
			return
		}
		fn()
		s.after(s.exp(mean), next)
	}
	s.after(s.exp(mean), next)
}

// badPacket returns a packet the broker may never send on an established
// connection, and its bytes when the codec would refuse to encode it.
func badPacket(kind int) (packets.Packet, []byte) {
	switch kind {
	case 0:
		return &packets.Connack{Properties: &packets.Properties{}}, nil
	case 1:
		return &packets.Pingreq{}, nil
	case 2:
		return &packets.Publish{QoS: 1, PacketID: 7, Payload: []byte("bad"), Properties: &packets.Properties{}}, nil // empty topic, no alias
	case 3:
		p := &packets.Publish{QoS: 1, PacketID: 7, Topic: "b2c", Payload: []byte("bad"), Properties: &packets.Properties{}}
		var b bytes.Buffer
		p.WriteTo(&b)
		raw := b.Bytes()
		raw[0] |= 0x06 // QoS 3
		return p, raw
	}
	return &packets.Auth{Properties: &packets.Properties{}}, nil
}

// kill ends the client process: at a write of the loop (inWrite, on the
// loop's goroutine, after its Commit) or while it waits (on the driver).
// In store mode the next process starts from what the store holds now.
func (s *Sim) kill(inWrite bool) {
	s.crashPending = false
	s.killing = true
	if c := s.cur; c != nil {
		if h := c.half; h != nil && !h.detected {
			h.excused = true
		}
	}
	if s.store != nil {
		s.killSaved = nil
		if inWrite {
			// (On the loop's goroutine: its session is quiet.)
			var b bytes.Buffer
			if err := s.loop.State().Save(&b); err != nil {
				s.violation("saving the session at the kill: %v", err)
			}
			s.killSaved = b.Bytes()
		}
		s.store = snapshot(s.store)
	}
	// The application's acks die with the process: the message is
	// delivered again to the next one.
	keep := s.pending[:0]
	for _, r := range s.pending {
		if !s.dropAck(r) {
			keep = append(keep, r)
		}
	}
	s.pending = keep
	// (The requests put back were in the channel already, each sent with
	// its Wake: no Wake is owed for them, and the loop is closed below.)
	for n := len(s.reqs); n > 0; n-- {
		if r := <-s.reqs; !s.dropAck(r) {
			s.reqs <- r
		}
	}
	l := s.loop
	s.post = append(s.post, func() { l.Close() })
}

// dropAck reports whether r is an Ack (which a kill loses), and undoes
// its count.
func (s *Sim) dropAck(r eventloop.Request) bool {
	a, ok := r.(eventloop.Ack)
	if ok {
		s.b2c[s.acks[a]].appAcked--
	}
	return ok
}

// snapshot copies a memory store: what survives the process.
func snapshot(m *state.MemoryStore) *state.MemoryStore {
	b := &state.Batch{Reset: true}
	for _, k := range state.Kinds() {
		m.Scan(k, nil, func(key, value []byte) bool {
			b.Puts = append(b.Puts, state.Record{Kind: k, Key: bytes.Clone(key), Value: bytes.Clone(value)})
			return true
		})
	}
	c := state.NewMemoryStore()
	c.Apply(b)
	return c
}

// options are the loop's options for the next loop of the application.
func (s *Sim) options() eventloop.Options {
	cfg := &s.cfg
	s.loops++
	pt := s.pingTimeout()
	queued := cfg.OfflineQueue
	if queued == 0 {
		queued = 1 << 30
	}
	return eventloop.Options{
		Servers:         []string{"mqtt://broker.sim"},
		ClientID:        "sim",
		ProtocolVersion: 5,
		KeepAlive:       cfg.KeepAlive,
		PingTimeout:     pt,
		ConnectTimeout:  cfg.ConnectTimeout,
		CleanStart:      s.loops == 1,
		SessionExpiry:   time.Hour,
		MaxInflight:     cfg.MaxInflight,
		MaxQueued:       queued,
		ReceiveMaximum:  cfg.ClientReceiveMax,
		ManualAcks:      cfg.ManualAcks,
		Reconnect:       cfg.Policy,
		BackOff:         newSeededBackOff(cfg, s.loops),
		HealthyAfter:    cfg.HealthyAfter,
		AckTimeout:      cfg.AckTimeout,
		WakeAfterSend:   cfg.WakeAfterSend,
		Dial:            s.dial,
	}
}

// pingTimeout is the loop's Options.PingTimeout: Config.PingTimeout, or
// the configured keepalive.
func (s *Sim) pingTimeout() time.Duration {
	if s.cfg.PingTimeout > 0 {
		return s.cfg.PingTimeout
	}
	return s.cfg.KeepAlive
}

// app is the application: it runs the event loop on its goroutine (a run
// ended by the policy is run again; a killed process is followed by a new
// loop from its store or its saved session), until the context ends.
func (s *Sim) app() {
	var (
		sess *state.MqttState
		l    *eventloop.EventLoop // a loop whose run the policy ended: Run again
	)
	s.mu.Lock()
	s.proc = 1
	if s.cfg.Store {
		s.store = state.NewMemoryStore()
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		s.dialAt = -1
		if l == nil {
			opts := s.options()
			if s.store != nil {
				opts.Store = s.store
			} else {
				opts.Session = sess
			}
			s.kaInterval = s.cfg.KeepAlive
			s.model = backoffModel{initial: s.cfg.BackoffInitial, max: s.cfg.BackoffMax, jitter: s.cfg.BackoffJitter}
			s.model.reset()
			s.mu.Unlock()
			var err error
			if l, err = eventloop.New(opts); err != nil {
				s.fail("eventloop.New: %v", err)
				return
			}
			s.mu.Lock()
		}
		s.loop = l
		killed := s.killing
		s.mu.Unlock()
		ev := l.Run(s.ctx, s.reqs)
		if killed {
			l.Close() // killed before the loop existed
		}
		var end error
		for {
			n, err := ev.Next()
			if err != nil {
				end = err
				break
			}
			s.mu.Lock()
			s.tick()
			s.notified(n)
			post := s.takePost()
			s.mu.Unlock()
			for _, f := range post {
				f()
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.tick()
		killed = s.killing
		switch {
		case killed:
			sess = s.restartProcess(l)
			l = nil
		case errors.Is(end, eventloop.ErrConnectionLost):
			// The application runs the same loop again: the session in
			// memory continues (and the back-off where it was).
			s.stats.RunsEnded++
		default:
			s.violation("the run ended: %v", end)
			s.mu.Unlock()
			return
		}
		s.after(s.cfg.AppRestart, func() {
			select {
			case s.restart <- struct{}{}:
			default:
			}
		})
		s.mu.Unlock()
		select {
		case <-s.restart:
		case <-s.ctx.Done():
			return
		}
	}
}

// fail records a violation from the application's goroutine.
func (s *Sim) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violation(format, args...)
}

// restartProcess starts a new process after a kill: the session comes
// from the store (as it was at the kill) or through Save and Load.
func (s *Sim) restartProcess(l *eventloop.EventLoop) *state.MqttState {
	s.killing = false
	s.proc++
	var (
		old, st *state.MqttState
		err     error
	)
	if s.store != nil {
		s.stats.CrashRestarts++
		s.noteText(tCrash, 1, "killed; the next process rebuilds the session from the store")
		old = l.State()
		if s.killSaved != nil {
			old, err = state.Load(bytes.NewReader(s.killSaved))
			if err != nil {
				s.violation("loading the session saved at the kill: %v", err)
				return nil
			}
		}
		st, err = state.LoadStore(s.store)
		if err == nil && st.Identity() == (state.Identity{}) {
			return nil // killed before its first commit: nothing to compare
		}
		if err != nil {
			s.violation("rebuilding the session from the store: %v", err)
			return nil
		}
		compareSessions(s, old, st)
		return nil
	}
	s.stats.SaveLoadRestarts++
	s.noteText(tCrash, 2, "restart through Save and Load")
	old = l.State()
	var buf bytes.Buffer
	if err = old.Save(&buf); err == nil {
		st, err = state.Load(&buf)
	}
	if err != nil {
		s.violation("restart through Save and Load: %v", err)
		return old
	}
	compareSessions(s, old, st)
	return st
}

// compareSessions: the session rebuilt after a restart is the one that was
// committed.
func compareSessions(s *Sim, old, st *state.MqttState) {
	type shape struct{ inflight, queued, outstanding, release int }
	a := shape{old.InFlight(), old.Queued(), old.Outstanding(), old.AwaitingRelease()}
	b := shape{st.InFlight(), st.Queued(), st.Outstanding(), st.AwaitingRelease()}
	if a != b {
		s.violation("restored session differs: in flight/queued/outstanding/awaiting release %v, was %v", b, a)
	}
	if !maps.Equal(old.Subscriptions(), st.Subscriptions()) {
		s.violation("restored subscriptions %v, were %v", st.Subscriptions(), old.Subscriptions())
	}
	oi, ni := old.InFlightPublishes(), st.InFlightPublishes()
	for i := range min(len(oi), len(ni)) {
		o, n := oi[i], ni[i]
		if o.Publish.PacketID != n.Publish.PacketID || o.Stage != n.Stage || msgOf(o.Publish) != msgOf(n.Publish) {
			s.violation("restored publish in flight #%d: id %d stage %d m=%d, was id %d stage %d m=%d",
				i, n.Publish.PacketID, n.Stage, msgOf(n.Publish), o.Publish.PacketID, o.Stage, msgOf(o.Publish))
			break
		}
	}
}

// dial is the loop's Options.Dial: a new simulated connection.
func (s *Sim) dial(ctx context.Context, server string) (netio.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick()
	if s.dialAt >= 0 && s.now != s.dialAt {
		s.violation("connection attempt at %v, the back-off said %v", s.now, s.dialAt)
	}
	s.dialAt = -1
	s.stats.Connections++
	c := s.newConn()
	m := newMemConn(s, c, s.proc)
	s.cur = c
	s.noteText(tDial, uint64(c.id), fmt.Sprintf("conn=%d", c.id))
	if s.faultsOn && s.cfg.DialFail > 0 && s.rng.Float64() < s.cfg.DialFail {
		s.stats.DialFailures++
		if s.rng.IntN(2) == 0 {
			// Refused: the loop learns it after a delay.
			s.end(c)
			s.after(s.notice(), func() { m.ended() })
		} else {
			// Accepted by something that never answers: connect timeout.
			c.silent = [2]bool{true, true}
		}
	}
	return m, nil
}

// clientWrites checks a packet the loop wrote on c (whether or not it will
// arrive).
func (s *Sim) clientWrites(c *conn, p packets.Packet) {
	switch v := p.(type) {
	case *packets.Publish:
		if c.resubPending {
			c.resubPending = false
			s.violation("session lost: the loop sent %s before re-establishing the subscription", describe(v))
		}
		s.checkPublish(c, v)
	case *packets.Subscribe:
		c.resubPending = false
	}
}

// checkPublish: DUP is set exactly on retransmissions within the broker
// session the loop knows of; a publish carries its topic (no alias).
func (s *Sim) checkPublish(c *conn, pub *packets.Publish) {
	m := msgOf(pub)
	if pub.Topic != "c2b" || m == 0 || m >= uint64(len(s.c2b)) {
		s.violation("the loop writes %s: wrong topic or payload", describe(pub))
		return
	}
	if pub.QoS != s.c2b[m].qos {
		s.violation("the loop writes message %d at QoS %d, requested %d", m, pub.QoS, s.c2b[m].qos)
	}
	if pub.QoS == 0 {
		if pub.Duplicate {
			s.violation("the loop writes QoS 0 %s with DUP set", describe(pub))
		}
		return
	}
	if pub.PacketID == 0 {
		s.violation("the loop writes %s without a packet id", describe(pub))
	}
	prev, seen := s.written[m]
	seen = seen && prev.epoch == s.epoch
	switch {
	case pub.Duplicate && !seen:
		s.violation("the loop writes %s with DUP set, but message %d was never sent in this broker session", describe(pub), m)
	case pub.Duplicate && prev.id != pub.PacketID:
		s.violation("the loop writes %s with DUP set, but message %d was sent with packet id %d", describe(pub), m, prev.id)
	case !pub.Duplicate && seen:
		s.violation("the loop writes %s again without DUP (first sent with packet id %d in this broker session)", describe(pub), prev.id)
	}
	if pub.Duplicate {
		s.stats.Replayed++
	}
	s.written[m] = writtenAt{epoch: s.epoch, id: pub.PacketID}
}

// clientReceives: packet p from the broker reaches the loop's end of c.
func (s *Sim) clientReceives(c *conn, p packets.Packet, bogus bool) {
	if c.cli.closed {
		return
	}
	if bogus || c.clientUp && isConnack(p) {
		c.bad = true
		s.badConns = append(s.badConns, c)
		return
	}
	switch v := p.(type) {
	case *packets.Connack:
		c.clientUp = true
		if inc := c.inc; v.SessionPresent && s.knownInc != 0 && inc != s.knownInc {
			// A phantom session: the broker lost the session at an
			// earlier CONNECT whose CONNACK (session present = 0) never
			// arrived, and made a new one; now it truthfully says
			// "session present" about that new, empty session. The loop
			// cannot tell: it keeps believing in its subscriptions (gone
			// at the broker) and its incoming QoS 2 ids (which the new
			// session may reuse for new messages, which are then taken
			// for duplicates).
			s.stats.PhantomSessions++
			s.brk.markPhantom(inc)
			s.noteText(tPhantom, uint64(inc), fmt.Sprintf("session present, but the broker's session %d is not the client's %d", inc, s.knownInc))
			if s.cfg.Strict {
				s.violation("session present = 1 for broker session %d, created at a CONNECT whose CONNACK the client never received: the client still believes in session %d",
					inc, s.knownInc)
			}
		}
		s.knownInc = c.inc
		if !v.SessionPresent {
			s.epoch++
			c.resubPending = s.subscribed
		}
		s.kaInterval = s.cfg.KeepAlive
		if v.Properties != nil && v.Properties.ServerKeepAlive != nil {
			s.kaInterval = time.Duration(*v.Properties.ServerKeepAlive) * time.Second
		}
	case *packets.Suback:
		s.subscribed = true
	}
}

func isConnack(p packets.Packet) bool { _, ok := p.(*packets.Connack); return ok }

// clientClosed: the loop closed its end of c.
func (s *Sim) clientClosed(c *conn) {
	if s.done {
		s.closeBy(c, clientSide, "the run ended")
		return
	}
	why := "closed by the loop"
	if h := c.half; h != nil && !h.detected && !h.excused {
		h.detected, h.detectedAt = true, s.now
		d := s.now - h.at
		s.stats.MaxDetect = max(s.stats.MaxDetect, d)
		s.noteText(tDetect, uint64(d), fmt.Sprintf("conn=%d half-open for %v (bound %v)", c.id, d, h.bound))
		if d > h.bound {
			s.violation("half-open connection %d (silent %s since %v) detected after %v, more than %v",
				c.id, dirNames(h.dirs), h.at, d, h.bound)
		}
	}
	if healthy(c) && c.cli.eof == nil && !c.bad && !s.killing && c.cli.proc == s.proc {
		s.violation("the loop closed the healthy connection %d", c.id)
	}
	s.closeBy(c, clientSide, why)
}

// notified handles a notification of the loop, as an application would.
func (s *Sim) notified(n eventloop.Notification) {
	switch n := n.(type) {
	case eventloop.Connected:
		s.stats.Connacks++
		s.upAt = s.now
	case eventloop.Disconnected:
		switch {
		case errors.Is(n.Err, eventloop.ErrKeepAliveTimeout):
			s.stats.KeepaliveDeaths++
		case errors.Is(n.Err, eventloop.ErrAckTimeout):
			s.stats.AckTimeouts++
		}
		s.noteText(tDown, 0, n.Err.Error())
		if s.now-s.upAt >= s.cfg.HealthyAfter {
			s.model.reset()
		}
	case eventloop.Reconnecting:
		lo, hi := s.model.take()
		if d := n.Delay; d < lo || d > hi || d <= 0 {
			s.violation("reconnect delay %v outside the schedule's [%v, %v]", d, lo, hi)
		}
		s.dialAt = s.now + n.Delay
		s.noteText(tDelay, uint64(n.Delay), n.Delay.String())
	case eventloop.Message:
		s.appDeliver(n)
	case eventloop.Published:
		s.completed(n)
	case eventloop.Subscribed:
		for _, r := range n.ReasonCodes {
			if r >= 0x80 {
				s.violation("subscription refused: %#x", r)
			}
		}
		if n.Resubscribe {
			s.stats.Resubscribes++
		}
	case eventloop.QueueFull:
		// The loop stopped reading the requests channel: only at
		// Options.MaxQueued.
		s.stats.QueueFull++
		if q := s.cfg.OfflineQueue; q == 0 || n.Queued < q {
			s.violation("QueueFull with %d queued, MaxQueued %d", n.Queued, q)
		}
	case eventloop.RequestFailed:
		if a, ok := n.Request.(eventloop.Ack); ok && s.cfg.ManualAcks {
			s.stats.AckErrors++
			if m, ok := s.acks[a]; ok {
				s.b2c[m].appAcked--
			}
			s.noteText(tAppAck, uint64(a.PacketID), fmt.Sprintf("refused id=%d: %v", a.PacketID, n.Err))
			return
		}
		s.violation("request refused: %T: %v", n.Request, n.Err)
	default:
		s.violation("unexpected notification %T", n)
	}
}

// appDeliver: the application receives a message.
func (s *Sim) appDeliver(msg eventloop.Message) {
	p := &packets.Publish{Topic: msg.Topic, QoS: msg.QoS, PacketID: msg.PacketID, Payload: msg.Payload, Duplicate: msg.Duplicate}
	m := msgOf(p)
	if p.Topic != "b2c" || m == 0 || m >= uint64(len(s.b2c)) {
		s.violation("the loop delivered a message it was never sent: %s", describe(p))
		return
	}
	r := &s.b2c[m]
	s.note(tAppDeliver, nil, int(m), nil)
	again := r.delivered > 0
	r.delivered++
	switch {
	case p.QoS != r.qos:
		s.violation("the loop delivered broker→client message %d at QoS %d, published at %d", m, p.QoS, r.qos)
	case !r.routed:
		s.violation("the loop delivered broker→client message %d, never routed to its session", m)
	case r.qos == 0 && again:
		s.violation("the loop delivered broker→client QoS 0 message %d %d times", m, r.delivered)
	case r.qos == 2 && r.appAcked > 0:
		s.violation("the loop delivered broker→client QoS 2 message %d again after the application acknowledged it", m)
	case r.qos == 2 && again && r.lastProc == s.proc:
		// Manual acks: a QoS 2 message delivered to a process that died
		// before acknowledging it is delivered again to the next one.
		s.violation("the loop delivered broker→client QoS 2 message %d twice to the same process", m)
	}
	r.lastProc = s.proc
	if p.QoS == 0 {
		return
	}
	if !s.cfg.ManualAcks {
		r.appAcked++
		return
	}
	// The application acknowledges it later, in any order.
	ack, proc := msg.Ack(), s.proc
	s.acksOut++
	s.after(s.exp(s.cfg.AckDelay), func() {
		s.acksOut--
		if s.proc != proc {
			return // that process is gone
		}
		r.appAcked++
		s.noteText(tAppAck, m, fmt.Sprintf("m=%d id=%d q%d", m, ack.PacketID, ack.QoS))
		s.pending = append(s.pending, ack)
		s.acks[ack] = m
	})
}

// completed: a publish of the application completed.
func (s *Sim) completed(d eventloop.Published) {
	m := msgOf(&packets.Publish{Payload: d.Request.Payload})
	if m == 0 || m >= uint64(len(s.c2b)) {
		s.violation("the loop completed an unknown publish")
		return
	}
	r := &s.c2b[m]
	s.note(tDone, nil, int(m), nil)
	r.completed++
	switch {
	case d.Err != nil:
		s.violation("publish %d failed: %v", m, d.Err)
	case d.ReasonCode >= 0x80 && d.ReasonCode != packets.PubcompPacketIdentifierNotFound:
		// PUBCOMP 0x92 answers a PUBREL replayed to a broker that had
		// already completed the flow (its PUBCOMP was lost): the message
		// was accepted at PUBREC.
		s.violation("publish %d completed with reason %#x", m, d.ReasonCode)
	case r.qos == 0:
	case r.completed > 1:
		s.violation("publish %d completed %d times", m, r.completed)
	case r.delivered == 0:
		s.violation("publish %d completed at the client, but the broker never received it", m)
	}
}

// drainCheck ends the run once everything has settled, or fails it when
// the drain period is over.
func (s *Sim) drainCheck() {
	if why := s.unsettled(); why == "" {
		s.stats.Drain = s.now - s.scriptEnd
		s.note(tSettled, nil, 0, nil)
		s.done = true
		return
	} else if s.now >= s.scriptEnd+s.cfg.Drain {
		s.violation("did not settle within %v after the script: %s", s.cfg.Drain, why)
		s.unsettledEnd = true
		s.done = true
		return
	}
	s.after(100*time.Millisecond, s.drainCheck)
}

// unsettled says what is still going on ("" when nothing is). It runs on
// the driver while the loop waits (synctest.Wait orders the loop's
// changes before it).
func (s *Sim) unsettled() string {
	b := s.brk
	c := s.cur
	switch {
	case len(s.pending) > 0 || len(s.reqs) > 0 || s.acksOut > 0:
		return fmt.Sprintf("%d requests not taken, %d acks to come", len(s.pending)+len(s.reqs), s.acksOut)
	case s.killing || s.loop == nil:
		return "client process restarting"
	case c == nil || !c.clientUp || !c.open || c.cli.closed || c.cli.eof != nil:
		return "client not connected"
	}
	st := s.loop.State()
	switch {
	case !st.Idle():
		return fmt.Sprintf("client has %d queued, %d outstanding", st.Queued(), st.Outstanding())
	case st.AwaitingRelease() > 0 && s.stats.PhantomSessions == 0:
		// (After a phantom session the client keeps incoming QoS 2 ids
		// the broker has forgotten: nothing ever releases them.)
		return fmt.Sprintf("client awaits PUBREL for %d messages", st.AwaitingRelease())
	case b.sess == nil || b.conn == nil:
		return "broker has no session or connection"
	case len(b.sess.out) > 0 || len(b.sess.queue) > 0:
		return fmt.Sprintf("broker has %d in flight, %d queued to the client", len(b.sess.out), len(b.sess.queue))
	case len(b.sess.inQoS2) > 0:
		return fmt.Sprintf("broker awaits PUBREL for %d messages", len(b.sess.inQoS2))
	case s.inflight > 0:
		return fmt.Sprintf("%d packets on the wire", s.inflight)
	}
	for _, h := range s.halfOpens {
		if !h.detected && !h.excused {
			return fmt.Sprintf("half-open connection %d (since %v) not detected", h.conn.id, h.at)
		}
	}
	return ""
}

// violation records a broken invariant.
func (s *Sim) violation(format string, args ...any) {
	msg := fmt.Sprintf("t=%v: ", s.now) + fmt.Sprintf(format, args...)
	s.viol = append(s.viol, msg)
	if s.cfg.Trace {
		s.lines = append(s.lines, "!!! "+msg)
	}
}

// finalChecks asserts the end-of-run invariants.
func (s *Sim) finalChecks() {
	if !s.done || s.unsettledEnd {
		// (What is still under way would only repeat as violations.)
		if len(s.viol) == 0 {
			s.violation("run ended without settling")
		}
		return
	}
	for m := 1; m < len(s.c2b); m++ {
		r := &s.c2b[m]
		switch r.qos {
		case 0:
			if r.delivered > 1 {
				s.violation("client→broker QoS 0 message %d delivered %d times", m, r.delivered)
			}
		case 1:
			if r.delivered < 1 {
				s.violation("client→broker QoS 1 message %d never delivered", m)
			}
			if r.delivered > 1 {
				s.stats.C2BDupQoS1++
			}
		case 2:
			switch {
			case r.delivered < 1:
				s.violation("client→broker QoS 2 message %d never delivered", m)
			case r.delivered > 1 && !r.atRisk:
				s.violation("client→broker QoS 2 message %d delivered %d times (the broker never lost it with a session)", m, r.delivered)
			case r.delivered > 1:
				s.stats.C2BDupQoS2++
			}
		}
		if r.qos > 0 && r.completed != 1 {
			s.violation("client→broker QoS %d message %d completed %d times at the client", r.qos, m, r.completed)
		}
	}
	for m := 1; m < len(s.b2c); m++ {
		r := &s.b2c[m]
		switch {
		case !r.routed:
			s.stats.B2CUnrouted++
			if r.delivered > 0 {
				s.violation("broker→client message %d delivered though never routed to the session", m)
			}
			continue
		case r.lost:
			s.stats.B2CLost++
		}
		switch r.qos {
		case 0:
			if r.delivered > 1 {
				s.violation("broker→client QoS 0 message %d delivered %d times", m, r.delivered)
			}
		case 1:
			if r.appAcked < 1 && !r.lost {
				s.violation("broker→client QoS 1 message %d delivered %d times, never acknowledged by the application", m, r.delivered)
			}
			if r.delivered > 1 {
				s.stats.B2CDupQoS1++
			}
		case 2:
			if r.appAcked > 1 || (r.appAcked < 1 && !r.lost) {
				s.violation("broker→client QoS 2 message %d delivered %d times, acknowledged %d times by the application", m, r.delivered, r.appAcked)
			}
		}
	}
	if s.inflight != 0 {
		s.violation("%d message packets still on the wire", s.inflight)
	}
	if b := s.brk; b.sess == nil || (!b.sess.subscribed && !b.sess.phantom) {
		s.violation("the client's subscription is not established at the broker at the end")
	}
	for _, h := range s.halfOpens {
		if !h.detected && !h.excused {
			s.violation("half-open connection %d (silent since %v) never detected", h.conn.id, h.at)
		}
	}
}

// msgOf returns the message number a PUBLISH carries.
func msgOf(p *packets.Publish) uint64 {
	if len(p.Payload) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(p.Payload)
}

func payload(m uint64) []byte { return binary.BigEndian.AppendUint64(nil, m) }

// clone copies a packet for the wire: the sender's structs (the session's
// publishes, its reusable acks) may change after they were written.
func clone(p packets.Packet) packets.Packet {
	switch v := p.(type) {
	case *packets.Publish:
		c := *v
		return &c
	case *packets.Puback:
		c := *v
		return &c
	case *packets.Pubrec:
		c := *v
		return &c
	case *packets.Pubrel:
		c := *v
		return &c
	case *packets.Pubcomp:
		c := *v
		return &c
	case *packets.Subscribe:
		c := *v
		return &c
	case *packets.Suback:
		c := *v
		return &c
	case *packets.Connect:
		c := *v
		return &c
	case *packets.Connack:
		c := *v
		return &c
	case *packets.Disconnect:
		c := *v
		return &c
	}
	return p // stateless: PINGREQ, PINGRESP, ...
}

// Trace.

type traceKind uint8

const (
	tSend traceKind = iota + 1
	tRecv
	tVanish
	tLost
	tCut
	tClose
	tSilence
	tDial
	tDown
	tDelay
	tCrash
	tAppDeliver
	tBrokerDeliver
	tDone
	tSessionLost
	tQuiet
	tSettled
	tDetect
	tPhantom
	tAppAck
	tBrokerRestart
)

var kindNames = [...]string{
	tSend: "send", tRecv: "recv", tVanish: "vanish", tLost: "lost", tCut: "CUT", tClose: "close",
	tSilence: "SILENCE", tDial: "dial", tDown: "DOWN", tDelay: "backoff", tCrash: "CRASH",
	tAppDeliver: "app-deliver", tBrokerDeliver: "broker-deliver", tDone: "done", tSessionLost: "SESSION-LOST",
	tQuiet: "faults-off", tSettled: "settled", tDetect: "detected", tPhantom: "PHANTOM-SESSION", tAppAck: "app-ack", tBrokerRestart: "BROKER-RESTART",
}

func (s *Sim) mix(w uint64) {
	h := (s.hash ^ w) * 1099511628211
	s.hash = h ^ h>>31
}

// note records an event in the trace hash (and the text trace).
func (s *Sim) note(k traceKind, c *conn, arg int, p packets.Packet) {
	s.mix(uint64(s.now))
	s.mix(uint64(k))
	id := 0
	if c != nil {
		id = c.id
	}
	s.mix(uint64(id))
	s.mix(uint64(arg))
	if p != nil {
		s.mixPacket(p)
	}
	if s.cfg.Trace {
		var b strings.Builder
		fmt.Fprintf(&b, "%12.6fs %-14s", s.now.Seconds(), kindNames[k])
		if c != nil {
			fmt.Fprintf(&b, " conn=%d", c.id)
		}
		switch k {
		case tSend, tRecv, tVanish, tLost:
			b.WriteString([]string{" c→b", " b→c"}[arg])
		case tSilence:
			b.WriteString([]string{"", " c→b", " b→c", " both"}[arg])
		case tClose:
			b.WriteString([]string{" by client", " by broker"}[arg])
		default:
			if arg != 0 {
				fmt.Fprintf(&b, " %d", arg)
			}
		}
		if p != nil {
			b.WriteString(" ")
			b.WriteString(describe(p))
		}
		s.lines = append(s.lines, b.String())
	}
}

// noteText records an event with a detail string for the text trace; the
// hash takes arg only.
func (s *Sim) noteText(k traceKind, arg uint64, text string) {
	s.mix(uint64(s.now))
	s.mix(uint64(k))
	s.mix(arg)
	if s.cfg.Trace {
		s.lines = append(s.lines, fmt.Sprintf("%12.6fs %-14s %s", s.now.Seconds(), kindNames[k], text))
	}
}

func (s *Sim) mixPacket(p packets.Packet) {
	switch v := p.(type) {
	case *packets.Publish:
		s.mix(uint64(packets.PUBLISH)<<56 | uint64(v.QoS)<<48 | uint64(boolInt(v.Duplicate))<<40 | uint64(v.PacketID))
		s.mix(msgOf(v) ^ uint64(len(v.Topic))<<60)
	case *packets.Puback:
		s.mix(uint64(packets.PUBACK)<<56 | uint64(v.ReasonCode)<<16 | uint64(v.PacketID))
	case *packets.Pubrec:
		s.mix(uint64(packets.PUBREC)<<56 | uint64(v.ReasonCode)<<16 | uint64(v.PacketID))
	case *packets.Pubrel:
		s.mix(uint64(packets.PUBREL)<<56 | uint64(v.ReasonCode)<<16 | uint64(v.PacketID))
	case *packets.Pubcomp:
		s.mix(uint64(packets.PUBCOMP)<<56 | uint64(v.ReasonCode)<<16 | uint64(v.PacketID))
	case *packets.Connack:
		s.mix(uint64(packets.CONNACK)<<56 | uint64(boolInt(v.SessionPresent))<<8 | uint64(v.ReasonCode))
	case *packets.Connect:
		s.mix(uint64(packets.CONNECT)<<56 | uint64(boolInt(v.CleanStart)))
	case *packets.Subscribe:
		s.mix(uint64(packets.SUBSCRIBE)<<56 | uint64(v.PacketID))
	case *packets.Suback:
		s.mix(uint64(packets.SUBACK)<<56 | uint64(v.PacketID))
	default:
		s.mix(uint64(len(describe(p))))
	}
}

// describe formats a packet for the text trace.
func describe(p packets.Packet) string {
	switch v := p.(type) {
	case *packets.Publish:
		dup := ""
		if v.Duplicate {
			dup = " DUP"
		}
		return fmt.Sprintf("PUBLISH %q id=%d q%d%s m=%d", v.Topic, v.PacketID, v.QoS, dup, msgOf(v))
	case *packets.Puback:
		return fmt.Sprintf("PUBACK id=%d rc=%#x", v.PacketID, v.ReasonCode)
	case *packets.Pubrec:
		return fmt.Sprintf("PUBREC id=%d rc=%#x", v.PacketID, v.ReasonCode)
	case *packets.Pubrel:
		return fmt.Sprintf("PUBREL id=%d rc=%#x", v.PacketID, v.ReasonCode)
	case *packets.Pubcomp:
		return fmt.Sprintf("PUBCOMP id=%d rc=%#x", v.PacketID, v.ReasonCode)
	case *packets.Connect:
		return fmt.Sprintf("CONNECT clean=%v ka=%d", v.CleanStart, v.KeepAlive)
	case *packets.Connack:
		return fmt.Sprintf("CONNACK present=%v rc=%#x", v.SessionPresent, v.ReasonCode)
	case *packets.Subscribe:
		return fmt.Sprintf("SUBSCRIBE id=%d", v.PacketID)
	case *packets.Suback:
		return fmt.Sprintf("SUBACK id=%d", v.PacketID)
	case *packets.Pingreq:
		return "PINGREQ"
	case *packets.Pingresp:
		return "PINGRESP"
	case *packets.Disconnect:
		return fmt.Sprintf("DISCONNECT rc=%#x", v.ReasonCode)
	case *packets.Auth:
		return "AUTH"
	}
	return fmt.Sprintf("%T", p)
}
