package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/reconnect"
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

	// Client options, as eventloop.Options has them.
	KeepAlive      time.Duration // whole seconds
	PingTimeout    time.Duration // 0: the keepalive
	ConnectTimeout time.Duration
	HealthyAfter   time.Duration // a connection up this long resets the back-off
	AckTimeout     time.Duration // 0: none
	MaxInflight    int
	OfflineQueue   int // the client takes requests only while fewer are queued (0: no bound)
	Policy         reconnect.Policy
	AppRestart     time.Duration // a run ended by the policy is resumed from its state after this

	// Reconnect back-off: exponential from BackoffInitial, doubling up to
	// BackoffMax, each delay jittered by ±BackoffJitter.
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

	// ManualAcks: the client's application acknowledges each QoS 1 and 2
	// message itself (state.Config.ManualAcks, state.Ack), AckDelay on
	// average after it was delivered, in any order; acks written while
	// disconnected are dropped, as the event loop does.
	ManualAcks bool
	AckDelay   time.Duration

	// Client process.
	CrashMean time.Duration // mean time between client process restarts (0: none)
	// Store: a restart is a kill (SIGKILL) after the last Commit, possibly
	// before the flush, and the session is rebuilt from a state.MemoryStore.
	// Without: a restart saves the session (Save) and loads it (Load).
	Store bool

	// Strict makes the known issues violations: a phantom session
	// (Stats.PhantomSessions), a replay beyond the Receive Maximum
	// (Stats.ReplayOverReceiveMax), a stale manual ack (Stats.StaleAcks).
	// Without it they are counted.
	Strict bool

	Drain time.Duration // after the script ends, how long everything may take to settle
	Trace bool          // keep a text trace (Result.Trace)

	// mutation breaks the broker or the client harness on purpose, to
	// show that the invariants catch it (tests only).
	mutation mutation
}

type mutation int

const (
	mutNone            mutation = iota
	mutNoDedup                  // broker: no QoS 2 dedup (delivers every PUBLISH)
	mutNoResend                 // broker: no resend of unacknowledged messages on session present
	mutNoPing                   // client: never sends PINGREQ
	mutDropReplay               // client: does not send Resumed.Replay
	mutFlushThenCommit          // client: flushes before Commit (store mode)
	mutIgnoreSchedule           // client: reconnects at once, ignoring the schedule's delay
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

	Replayed        int // packets replayed after session-present CONNACKs
	Requeued        int // publishes and (un)subscribes requeued as new after session loss
	CompletedOnLoss int // QoS 2 completed by Resumed.Completed
	Resubscribes    int

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
	// StaleAcks: manual acks of a message from a lost broker session that
	// acknowledged another message reusing its packet id.
	StaleAcks int
	// AckErrors: state.Ack refused an application's ack (the session
	// forgot the id: session lost, or already acked).
	AckErrors int
	// ReplayOverReceiveMax: replayed (DUP) QoS 2 publishes the broker
	// received beyond its Receive Maximum (it had lowered it).
	ReplayOverReceiveMax int

	Drain time.Duration // from the end of the script to quiescence
}

// Result is the outcome of a run.
type Result struct {
	Config     Config
	Hash       uint64   // hash of the event trace
	Violations []string // broken invariants, in virtual-time order
	Stats      Stats
	Trace      []string // with Config.Trace
}

// maxViolations stops a run that is clearly broken.
const maxViolations = 20

// Sim is one run of the simulation.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	now   time.Duration
	seq   uint64
	queue eventQueue

	cli *client
	brk *broker

	nconns    int
	inflight  int // message-flow packets on the wire
	halfOpens []*halfOpen
	storm     int
	faultsOn  bool
	scriptEnd time.Duration
	done      bool
	// unsettledEnd: the drain period ended before everything settled.
	unsettledEnd bool

	c2b []c2bRec // by message number (1-based)
	b2c []b2cRec

	hash  uint64
	lines []string
	viol  []string
	stats Stats
}

// c2bRec follows one client→broker message.
type c2bRec struct {
	qos       byte
	delivered int32 // by the broker to its subscribers
	completed int32 // PublishDone at the client, or Resumed.Completed
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
	// delivery; with manual acks: a successful state.Ack).
	appAcked int32
	lastProc int // the client process it was last delivered to
	// staleAcked: acknowledged by the application's ack of another
	// message (Stats.StaleAcks).
	staleAcked bool
	acked      int32 // flow completed at the broker
	routed     bool  // the client's session was subscribed when it was published
	lost       bool  // the broker lost the session before the flow completed
}

// Run simulates cfg and checks the invariants.
func Run(cfg Config) *Result {
	s := newSim(cfg)
	s.run()
	s.finalChecks()
	s.stats.Virtual = s.now
	r := &Result{Config: cfg, Hash: s.hash, Violations: s.viol, Stats: s.stats, Trace: s.lines}
	return r
}

func newSim(cfg Config) *Sim {
	s := &Sim{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		hash: 14695981039346656037,
	}
	s.brk = newBroker(s)
	s.cli = newClient(s)
	s.script()
	return s
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
	s.cli.reqs = append(s.cli.reqs, request{at: 0, sub: true})
	s.c2b = make([]c2bRec, cfg.ClientPublishes+1)
	t := time.Duration(0)
	for m := 1; m <= cfg.ClientPublishes; m++ {
		if s.rng.Float64() >= cfg.Burst {
			t += s.exp(cfg.PublishGap)
		}
		q := qos()
		s.c2b[m].qos = q
		s.cli.reqs = append(s.cli.reqs, request{at: t, msg: uint64(m), qos: q})
	}
	s.scriptEnd = t
	for i, r := range s.cli.reqs {
		s.at(r.at, func() { s.cli.arrive(i) })
	}
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
		if c := s.cli.conn; c != nil && c.open {
			s.cut(c, "network cut")
			s.storm = cfg.StormLen
		}
	})
	s.poisson(cfg.HalfOpenMean, func() {
		if c := s.cli.conn; c != nil && c.clientUp && c.half == nil && healthy(c) {
			dirs := [...][2]bool{{true, true}, {true, false}, {false, true}}[s.rng.IntN(3)]
			s.silence(c, dirs)
		}
	})
	s.poisson(cfg.BadPacketMean, func() {
		if c := s.brk.conn; c != nil && c.brokerUp && c.open {
			s.stats.BadPackets++
			s.send(c, toClient, badPacket(s.rng.IntN(5)), true)
		}
	})
	s.poisson(cfg.CrashMean, func() {
		// The process dies at the end of its next iteration, whatever
		// it is doing (after Commit, before the flush), or in 10 ms.
		s.cli.crashPending = true
		s.after(10*time.Millisecond, func() {
			if s.cli.crashPending {
				s.cli.step()
			}
		})
	})
	// The first connection attempt.
	s.at(0, func() { s.cli.step() })
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
// connection.
func badPacket(kind int) packets.Packet {
	switch kind {
	case 0:
		return &packets.Connack{}
	case 1:
		return &packets.Pingreq{}
	case 2:
		return &packets.Publish{QoS: 1, PacketID: 7, Payload: []byte("bad")} // empty topic, no alias
	case 3:
		return &packets.Publish{QoS: 3, PacketID: 7, Topic: "b2c", Payload: []byte("bad")}
	}
	return &packets.Auth{}
}

func (s *Sim) run() {
	for len(s.queue) > 0 && !s.done && len(s.viol) < maxViolations {
		ev := s.queue.pop()
		s.now = ev.at
		s.stats.Events++
		ev.fn()
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

// unsettled says what is still going on ("" when nothing is).
func (s *Sim) unsettled() string {
	c, b := s.cli, s.brk
	switch {
	case c.taken < len(c.reqs):
		return fmt.Sprintf("%d requests not taken", len(c.reqs)-c.taken)
	case c.phase != phaseConnected:
		return "client not connected"
	case !c.st.Idle():
		return fmt.Sprintf("client has %d queued, %d outstanding", c.st.Queued(), c.st.Outstanding())
	case c.st.AwaitingRelease() > 0 && s.stats.PhantomSessions == 0:
		// (After a phantom session the client keeps incoming QoS 2 ids
		// the broker has forgotten: nothing ever releases them.)
		return fmt.Sprintf("client awaits PUBREL for %d messages", c.st.AwaitingRelease())
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
			if r.appAcked < 1 && !r.lost && !r.staleAcked {
				s.violation("broker→client QoS 1 message %d delivered %d times, never acknowledged by the application", m, r.delivered)
			}
			if r.delivered > 1 {
				s.stats.B2CDupQoS1++
			}
		case 2:
			if r.appAcked > 1 || (r.appAcked < 1 && !r.lost && !r.staleAcked) {
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
)

var kindNames = [...]string{
	tSend: "send", tRecv: "recv", tVanish: "vanish", tLost: "lost", tCut: "CUT", tClose: "close",
	tSilence: "SILENCE", tDial: "dial", tDown: "DOWN", tDelay: "backoff", tCrash: "CRASH",
	tAppDeliver: "app-deliver", tBrokerDeliver: "broker-deliver", tDone: "done", tSessionLost: "SESSION-LOST",
	tQuiet: "faults-off", tSettled: "settled", tDetect: "detected", tPhantom: "PHANTOM-SESSION", tAppAck: "app-ack",
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
