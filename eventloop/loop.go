package eventloop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/keepalive"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state"
)

// Tuning of one loop iteration.
const (
	// requestBatch caps requests taken per iteration, so reading the
	// socket is never starved by a fast producer.
	requestBatch = 256
	// flushThreshold flushes mid-iteration when this much is buffered.
	flushThreshold = 64 << 10
	// pollSlice bounds one park in the runtime's poller while a reply is
	// expected: after it the loop waits with select, which also watches
	// the context and the requests channel.
	pollSlice = 2 * time.Millisecond
	// streamWindow and streamSlice: two arrivals less than the window
	// apart, the last one within the window, mean more are likely on
	// their way (a broker streaming messages), so the loop parks in the
	// poller for a short slice rather than waiting for a signal per
	// arrival. Sparser traffic (one message now and then) waits for
	// SIGIO, which costs nothing while no byte comes.
	//
	// The window equals pollSlice: a request waits at most that long
	// while the loop parks for bytes it expects, as it does for replies.
	// A message every millisecond is then one wakeup by the poller each,
	// instead of a signal relayed through os/signal (measured: about half
	// the CPU per message, see the journal).
	streamWindow = 2 * time.Millisecond
	streamSlice  = 2 * time.Millisecond
	// batchMin, batchMax, batchDelay: when bytes arrive fast enough that
	// at least batchMin would gather within batchDelay (a broker writing
	// message after message), the wait lets that many (at most batchMax)
	// gather before waking, for at most batchDelay (netio.BatchReader,
	// SO_RCVLOWAT), so that one wakeup reads many messages.
	batchMin   = 512
	batchMax   = 16 << 10
	batchDelay = 300 * time.Microsecond
	// replyBatchMin, minAckSize: with at least replyBatchMin requests
	// awaiting their answers (a pipelined publisher), a park for replies
	// waits the same way until a quarter of them may have arrived, counting
	// minAckSize bytes per answer (a PUBACK without reason code), or
	// batchDelay.
	replyBatchMin = 32
	minAckSize    = 4
	// farFuture stands for "no timer".
	farFuture = 24 * time.Hour
	// closeWriteTimeout bounds the farewell DISCONNECT.
	closeWriteTimeout = time.Second
)

type phase int

const (
	phaseDisconnected phase = iota // connect next
	phaseBackoff                   // waiting to reconnect; requests go to the offline queue
	phaseConnected
	phaseEnded
)

// EventLoop is an MQTT client connection lifecycle driven by Next. Create
// one with New, start a run with Run. An EventLoop is used from one
// goroutine at a time (the one calling Next); only Close, Resume, Ack,
// SendAck and Status may be called from others.
type EventLoop struct {
	opts Options
	tls  *tls.Config // Options.TLSConfig with the loop's session cache and key log
	st   *state.MqttState
	log  *slog.Logger
	dbg  bool

	acks      ackQueue   // acks from any goroutine (acks.go)
	status    liveStatus // what Status reports (status.go)
	queueFull bool       // QueueFull was reported and the queue has not emptied since
	// per call of NextContext
	waitCtx   context.Context // nil in Next
	waitDone  <-chan struct{} // waitCtx.Done(), or nil
	waitEnded bool            // the loop would have waited, but waitCtx had ended

	// per run
	ctx      context.Context
	requests <-chan Request
	reqOpen  bool // the channel may still deliver requests
	reqDone  bool // the channel was closed: end the run once idle
	phase    phase
	endErr   error
	events   []Notification
	evHead   int
	timer    *time.Timer
	paused   bool
	resume   atomic.Bool
	wake     chan struct{}
	closed   atomic.Bool
	live     atomic.Pointer[netio.Conn] // the connection, for Close from other goroutines

	// per connection
	conn        netio.Conn
	server      string
	rd          *wire.Reader
	wr          *wire.Writer
	ka          *keepalive.Timer
	connects    int                 // successful CONNACKs in this loop
	rotation    *reconnect.Rotation // which of Servers to try next
	roundErrs   []error             // failures of the servers tried since the round began (see nextServerAtOnce)
	attempt     int                 // failed attempts since the last success
	sched       *reconnect.Schedule
	retryAt     time.Time
	upSince     time.Time
	throttle    throttle
	throttleAt  time.Time // when the throttle lets the next publish go (zero: not holding)
	assignedID  string
	pollMissed  bool        // the last park in the poller timed out
	parking     atomic.Bool // parked in the poller: Wake/Ack/Resume/Close cut it short (cutPark)
	handed      bool        // the last wait ended because another goroutine handed the loop work (see parkForBroker)
	ctxStop     func() bool // stops the context.AfterFunc that cuts a long park (parkForBroker)
	rxAt        time.Time   // when bytes last arrived
	burst       bool        // the last two arrivals were less than streamWindow apart
	rate        int         // bytes likely to arrive within batchDelay (see arrived)
	batch       batchWait   // the read of a stream (see wait)
	pendingRead error       // a read error seen while waiting, handled next step
	reauthing   bool        // a re-authentication is under way (auth.go)
	aliasIn     inAliases   // the broker's topic aliases (alias.go)
	aliasOut    outAliases
	mig         migration   // a change of network path (migrate.go)
	streams     streamSet   // QUIC data streams (streams.go)
	poison      poisonWatch // the publish the broker keeps dropping connections on (poison.go)
	blocked     func() bool // writeBlocked, bound once (interrupt.go)
	leaving     bool        // a farewell DISCONNECT is being written
	stopReq     Request     // a Shutdown or Disconnect taken while a write was blocked
	held        []Request   // requests taken while a write was blocked, to accept after it
	rmWarned    bool        // the broker's overrun of ReceiveMaximum was logged (flow.go)
}

// New checks the options and returns a loop ready to Run. It does not
// connect.
func New(opts Options) (*EventLoop, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg := state.Config{MaxInflight: o.MaxInflight, ManualAcks: o.ManualAcks}
	st := o.Session
	if o.Store != nil {
		// The session the store holds, attached to it (an empty one for
		// an empty store).
		if st, err = state.LoadStoreSpool(o.Store, spoolOf(&o)); err != nil {
			return nil, fmt.Errorf("%w: loading the session: %w", ErrStore, err)
		}
		id := sessionIdentity(&o)
		if have := st.Identity(); have != (state.Identity{}) && !sameSession(have, id) {
			return nil, fmt.Errorf("%w: %w: it holds the session of client %q at %s, not of client %q at %s (a broker reached under other addresses: name the session with Options.SessionName)",
				ErrStore, ErrStoreMismatch, have.ClientID, have.Server, id.ClientID, id.Server)
		}
		// The store follows the servers as they are now (at the next
		// commit).
		st.SetIdentity(id)
	}
	if st == nil {
		st = state.New(cfg)
	}
	st.SetConfig(cfg)
	st.SetSpool(spoolOf(&o))
	l := &EventLoop{opts: o, st: st, log: o.Logger, wake: make(chan struct{}, 1), sched: reconnect.NewSchedule(o.BackOff), rotation: reconnect.NewRotation(len(o.Servers)), tls: tlsConfig(&o)}
	if l.log != nil {
		l.dbg = l.log.Enabled(context.Background(), slog.LevelDebug)
	}
	return l, nil
}

// State returns the session: publishes in flight, requests accepted and not
// yet sent, incoming QoS 2 ids awaiting PUBREL, subscriptions. Pass it as
// Options.Session to continue it in another loop, or call Run again. Do not
// use it while a run is in progress.
func (l *EventLoop) State() *state.MqttState { return l.st }

// Events is one run of an EventLoop. Call Next until it returns an error.
type Events struct{ l *EventLoop }

// Run starts a run: the loop connects, takes requests from requests (any
// channel; nil means none; closing it ends the run once every request taken
// from it has completed) and reports what happens through Next. Run itself
// does nothing else and starts no goroutine. A loop whose run ended may Run
// again to continue the session.
func (l *EventLoop) Run(ctx context.Context, requests <-chan Request) *Events {
	l.stopCtxWatch()
	l.ctx = ctx
	l.requests = requests
	l.reqOpen = requests != nil
	l.reqDone = false
	l.phase = phaseDisconnected
	l.roundErrs = nil
	l.rotation.NewRound()
	l.endErr = nil
	l.events = l.events[:0]
	l.evHead = 0
	l.paused = false
	l.closed.Store(false)
	l.startAcks()
	l.statusRunning(true, nil)
	if l.timer == nil {
		l.timer = time.NewTimer(farFuture)
	}
	return &Events{l: l}
}

// Next returns the next notification, doing the loop's work until there is
// one. It returns a nil notification and an error when the run has ended:
// ErrRequestsDone, ErrDisconnected, ErrStopped, ErrConnectionLost or
// ErrStore, each wrapped with detail (test with errors.Is). Every call
// after that returns the same error. To stop waiting without ending the
// run, use NextContext.
func (e *Events) Next() (Notification, error) { return e.l.next() }

// NextContext is Next with a limit on the wait: ctx bounds how long it
// waits, not the work. It returns a notification as soon as one is ready
// (as Next does); when ctx ends while the loop has nothing to report, or
// has ended before the call and the loop finds nothing ready without
// waiting, it returns a nil notification and an error wrapping
// ErrWaitEnded and the context's error (errors.Is(err,
// context.DeadlineExceeded) holds after a timeout). The run goes on: the
// next call continues it, and nothing is lost. This lets the goroutine
// driving the loop time out a request, do periodic work or stop waiting
// without ending the run (the run's own context, given to Run, ends it).
//
// Since ready notifications come first, a caller that keeps receiving
// them while its deadline has passed (a steady stream of messages) sees
// ErrWaitEnded only once they stop: check ctx.Err() between them when
// that matters. Calling with an ended ctx is a poll: the loop reads,
// writes and keeps alive what it can without blocking.
//
// The wait ends promptly while the loop is connected or waiting to
// reconnect; a connection attempt already under way (dialing, handshakes,
// waiting for CONNACK) finishes first, within Options.ConnectTimeout, and
// none starts after ctx ended.
func (e *Events) NextContext(ctx context.Context) (Notification, error) {
	l := e.l
	l.waitCtx, l.waitDone, l.waitEnded = ctx, ctx.Done(), false
	defer func() { l.waitCtx, l.waitDone, l.waitEnded = nil, nil, false }()
	return l.next()
}

// waitOver reports whether the context of NextContext has ended, and
// notes it so that next returns ErrWaitEnded instead of waiting.
func (l *EventLoop) waitOver() bool {
	if l.waitDone == nil {
		return false
	}
	select {
	case <-l.waitDone:
		l.waitEnded = true
		return true
	default:
		return false
	}
}

// All iterates over the run's notifications. The last pair carries the
// error that ended the run (and a nil notification); breaking out of the
// loop early leaves the run open: call Next again, or Close.
func (e *Events) All() iter.Seq2[Notification, error] {
	return func(yield func(Notification, error) bool) {
		for {
			n, err := e.Next()
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(n, nil) {
				return
			}
		}
	}
}

// Close ends the run at once: the connection is closed without DISCONNECT
// (the broker publishes the will, if any), and the next call to Next returns
// ErrStopped. Safe to call from any goroutine and more than once.
func (l *EventLoop) Close() error {
	l.closed.Store(true)
	if c := l.live.Load(); c != nil {
		(*c).Close()
	}
	l.poke()
	return nil
}

// Resume undoes a Pause from outside the requests channel (e.g. when the
// channel is no longer read because MaxQueued requests wait). Safe to call
// from any goroutine.
func (l *EventLoop) Resume() {
	l.resume.Store(true)
	l.poke()
}

func (l *EventLoop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
	l.cutPark()
}

// Wake makes a waiting loop look at its requests channel now: call it
// after sending a request on the channel from another goroutine that then
// waits for the answer. After an answer, while more messages may be on
// their way, the loop parks in the runtime's poller for up to 2 ms without
// watching the channel (the cheapest wait for bytes); Wake cuts that park
// short, so that a goroutine that sends and awaits one request after
// another is not held back by it (over TCP and Unix sockets; other
// transports take the request when the park ends). A park for a reply is
// not cut: the reply ends it. Without Wake the request is still taken,
// when the park ends. Wake costs an atomic load when the loop does not
// park. Safe to call from any goroutine.
func (l *EventLoop) Wake() {
	l.cutPark()
}

// cutPark ends a park in the poller (see wait) from another goroutine.
func (l *EventLoop) cutPark() {
	if !l.parking.Load() || !l.parking.Swap(false) {
		return
	}
	if c := l.live.Load(); c != nil {
		if w, ok := (*c).(netio.WaitInterrupter); ok {
			w.InterruptWait()
		}
	}
}

func (l *EventLoop) next() (Notification, error) {
	for {
		if l.evHead < len(l.events) {
			n := l.events[l.evHead]
			l.events[l.evHead] = nil
			l.evHead++
			if l.evHead == len(l.events) {
				l.events = l.events[:0]
				l.evHead = 0
			}
			return n, nil
		}
		if l.phase == phaseEnded {
			return nil, l.endErr
		}
		if l.waitEnded {
			l.waitEnded = false
			return nil, fmt.Errorf("%w: %w", ErrWaitEnded, context.Cause(l.waitCtx))
		}
		if l.ctx == nil {
			return nil, fmt.Errorf("%w: Next before Run", ErrInvalidRequest)
		}
		// Acks first: a run that stops now still sends them with its
		// DISCONNECT.
		l.takeAcks(false)
		if l.checkStop() {
			continue
		}
		switch l.phase {
		case phaseDisconnected:
			if l.waitOver() {
				continue // no new connection attempt once the wait is over
			}
			l.connect()
		case phaseBackoff:
			l.backoffStep()
		case phaseConnected:
			l.step()
		}
		l.publishCounts()
	}
}

func (l *EventLoop) emit(n Notification) { l.events = append(l.events, n) }

// checkStop ends the run if its context was cancelled or Close was called.
func (l *EventLoop) checkStop() bool {
	if l.takeStopRequest() {
		return true
	}
	if l.closed.Load() {
		l.closeConn()
		l.end(ErrStopped, ErrStopped)
		return true
	}
	if err := l.ctx.Err(); err != nil {
		cause := fmt.Errorf("%w: %w", ErrStopped, context.Cause(l.ctx))
		if l.phase == phaseConnected {
			l.farewell(packets.DisconnectNormalDisconnection, nil)
		}
		l.closeConn()
		l.end(cause, cause)
		return true
	}
	return false
}

// end finishes the run: a Disconnected notification (when a connection
// was up or attempted), then err from Next.
func (l *EventLoop) end(notify error, err error) {
	// Acks handed in before the end count: the session records them (the
	// broker, which did not get them, delivers those messages again).
	l.takeAcks(true)
	if !errors.Is(err, ErrStore) {
		if cerr := l.st.Commit(); cerr != nil {
			err = fmt.Errorf("%w (and saving the session failed: %w)", err, cerr)
		}
	}
	if len(l.held) > 0 {
		l.failHeld(l.held)
		l.held = nil
	}
	if notify != nil && l.connects > 0 {
		l.emit(Disconnected{Err: notify})
	}
	l.phase = phaseEnded
	l.endErr = err
	l.timer.Stop()
	l.stopCtxWatch()
	l.publishCounts()
	l.statusRunning(false, err)
}

// lost handles an established connection that broke.
func (l *EventLoop) lost(cause error) { l.connectionDown(cause, true) }

func (l *EventLoop) closeConn() {
	l.resetMigration()
	if l.conn != nil {
		l.conn.Disarm()
		l.conn.Close()
		l.conn = nil
		l.live.Store(nil)
		l.statusDown(nil)
	}
	if l.phase == phaseConnected {
		l.phase = phaseDisconnected
	}
}

// farewell sends DISCONNECT, best effort, with a short deadline.
func (l *EventLoop) farewell(reason byte, expiry *time.Duration) {
	if l.conn == nil {
		return
	}
	d := &packets.Disconnect{ReasonCode: reason, Properties: &packets.Properties{}}
	if expiry != nil {
		secs := wholeSeconds(*expiry)
		d.Properties.SessionExpiryInterval = &secs
	}
	// Queued packets go before the DISCONNECT, but a broker that does not
	// read is not waited for (writeBlocked).
	l.leaving = true
	defer func() { l.leaving = false }()
	if l.write(d) == nil && l.conn != nil {
		_ = l.wr.Flush(l.conn, time.Now().Add(closeWriteTimeout))
	}
}

// step is one iteration of a connected loop: read and handle, take and
// send requests, keep alive, flush, and wait if nothing happened.
func (l *EventLoop) step() {
	progress := false
	n, readErr := l.rd.FillNow(l.conn)
	if l.pendingRead != nil {
		readErr, l.pendingRead = l.pendingRead, nil
	}
	if n > 0 {
		progress = true
	}
	now := time.Now()
	if n > 0 {
		l.arrived(now, n)
	}
	if !l.handleBuffered(now) {
		return
	}
	if readErr != nil {
		l.lost(fmt.Errorf("reading from %s: %w", l.server, readErr))
		return
	}
	if len(l.streams.open) > 0 {
		got, ok := l.readStreams(now)
		if !ok {
			return
		}
		progress = progress || got
	}
	if l.takeRequests() {
		progress = true
	}
	l.noteQueue()
	if l.phase != phaseConnected {
		return
	}
	// A connection found lost is found so before anything is queued on
	// it: sendQueued marks what it encodes as sent, and a loss declared
	// after it would drop those bytes unflushed, so that the next
	// connection would send them as duplicates (DUP) of a first attempt
	// that never left (found by the simulation).
	if !l.checkPath(now) {
		return
	}
	if act, _ := l.ka.Check(now); act == keepalive.Dead {
		if !l.pathLost(PathPingTimeout, ErrKeepAliveTimeout, now) {
			return
		}
	}
	if l.opts.AckTimeout > 0 {
		if sent, ok := l.st.OldestUnacked(); ok && now.Sub(l.ackReference(sent)) >= l.opts.AckTimeout {
			if !l.pathLost(PathAckTimeout, ErrAckTimeout, now) {
				return
			}
		}
	}
	if l.sendQueued() {
		progress = true
	}
	if l.phase != phaseConnected {
		return
	}
	if act, _ := l.ka.Check(now); act == keepalive.SendPing {
		if l.write(&packets.Pingreq{}) != nil {
			return
		}
		l.ka.PingSent(now)
	}
	if !l.flush(now) {
		return
	}
	if l.reqDone && l.st.Idle() {
		l.farewell(packets.DisconnectNormalDisconnection, nil)
		l.closeConn()
		l.end(ErrRequestsDone, ErrRequestsDone)
		return
	}
	if progress || l.evHead < len(l.events) {
		return
	}
	l.wait(now)
}

// arrived notes that n bytes arrived at now: two arrivals less than
// streamWindow apart make a burst, and their rate says how many bytes
// would gather within batchDelay (see wait).
func (l *EventLoop) arrived(now time.Time, n int) {
	gap := now.Sub(l.rxAt)
	l.burst = gap < streamWindow
	l.rate = 0
	if gap > 0 && l.burst {
		l.rate = int(min(int64(n)*int64(batchDelay)/int64(gap), batchMax))
	}
	l.rxAt = now
	// Bytes are proof of life, not only whole packets: a large message
	// arriving slowly keeps the connection alive (and answers a PINGREQ
	// whose PINGRESP waits behind it).
	l.ka.Received(now)
}

// handleBuffered handles every complete packet in the read buffer of the
// control stream. It returns false if the connection ended.
func (l *EventLoop) handleBuffered(now time.Time) bool { return l.handleFrom(l.rd, 0, now) }

// handleFrom handles every complete packet in the read buffer of stream
// from (0: the control stream). It returns false if the connection ended.
func (l *EventLoop) handleFrom(rd *wire.Reader, from int, now time.Time) bool {
	got := false
	for {
		cp, err := rd.Next()
		if err != nil {
			l.lost(fmt.Errorf("from %s: %w", l.server, err))
			return false
		}
		if cp == nil {
			break
		}
		got = true
		if l.dbg {
			l.logPacketOn("in", from, cp.Content)
		}
		if !l.handle(cp, from) {
			return false
		}
	}
	if got {
		l.ka.Received(now)
	}
	return true
}

// handle applies one packet from the broker, which came on stream from.
func (l *EventLoop) handle(pkt *wire.Packet, from int) bool {
	switch p := pkt.Content.(type) {
	case *packets.Auth:
		if l.opts.Authenticator != nil {
			return l.handleAuth(p)
		}
	case *packets.Publish:
		if code, err := l.aliasIn.resolve(p); err != nil {
			l.farewell(code, nil)
			l.lost(err)
			return false
		}
	}
	l.inbound(&pkt.ControlPacket, from)
	ev, reply, err := l.st.HandleIncoming(&pkt.ControlPacket)
	if err != nil {
		l.lost(err)
		return false
	}
	// The notification first: the session has recorded the packet, so
	// if the reply cannot be written (the connection ends), a resend
	// will not be reported again.
	if !l.notify(ev, pkt) {
		return false
	}
	if reply != nil {
		if l.reply(reply, from) != nil {
			return false
		}
		if _, isRel := reply.(*packets.Pubrel); isRel && l.opts.AckTimeout > 0 {
			l.st.MarkSent(reply, time.Now())
		}
	}
	return true
}

// notify emits the notification of a session event caused by pkt. It
// returns false if the connection ended (the broker sent DISCONNECT).
func (l *EventLoop) notify(ev state.Event, pkt *wire.Packet) bool {
	switch ev := ev.(type) {
	case nil:
	case state.Delivered:
		if pkt.Content != packets.Packet(ev.Publish) {
			pkt = nil // not the packet just decoded: its extras do not apply
		}
		m := messageFrom(ev.Publish, pkt)
		m.session = ev.Session
		l.status.counts.msgsIn++
		l.emit(m)
		if m.QoS > 0 {
			l.checkReceiveMaximum()
		}
	case state.PublishDone:
		l.doneRoute(ev.Publish.PacketID)
		l.emit(publishedFrom(ev))
	case state.SubscribeDone:
		l.doneRoute(ev.Subscribe.PacketID)
		req, ok := ev.Tag.(Subscribe)
		if !ok {
			req = withTag(subscribeRequestFrom(ev.Subscribe), ev.Tag).(Subscribe)
		}
		_, resub := ev.Tag.(state.Resubscribe)
		l.emit(Subscribed{Request: req, ReasonCodes: ev.Suback.Reasons, Resubscribe: resub})
	case state.UnsubscribeDone:
		l.doneRoute(ev.Unsubscribe.PacketID)
		req, ok := ev.Tag.(Unsubscribe)
		if !ok {
			req = withTag(Unsubscribe{Topics: ev.Unsubscribe.Topics}, ev.Tag).(Unsubscribe)
		}
		codes := ev.Unsuback.Reasons
		if len(codes) == 0 {
			// MQTT 3.1.1: an UNSUBACK has no codes; every topic succeeded.
			codes = make([]byte, len(ev.Unsubscribe.Topics))
		}
		l.emit(Unsubscribed{Request: req, ReasonCodes: codes})
	case state.BrokerDisconnect:
		d := ev.Disconnect
		l.lost(reasonCodeError("DISCONNECT", d.ReasonCode, d.Properties))
		return false
	}
	return true
}

func publishedFrom(ev state.PublishDone) Published {
	req, ok := ev.Tag.(Publish)
	if !ok {
		// Restored from a saved session (tags are not saved), or spooled
		// (only the user's Tag was kept).
		req = withTag(publishRequestFrom(ev.Publish), ev.Tag).(Publish)
	}
	p := Published{Request: req, ReasonCode: ev.ReasonCode}
	// A refusal comes in PUBACK or PUBREC. By PUBCOMP the broker has
	// accepted the message (at PUBREC); a PUBCOMP code such as 0x92 only
	// says it no longer knew the id, so it is reported, not an error.
	if ev.ReasonCode >= 0x80 && ev.Ack != packets.PUBCOMP {
		rerr := &ReasonCodeError{Packet: "PUBACK", Code: ev.ReasonCode}
		if ev.Ack == packets.PUBREC {
			rerr.Packet = "PUBREC"
		}
		if ev.Properties != nil {
			rerr.ReasonString = ev.Properties.ReasonString
		}
		p.Err = rerr
	}
	return p
}

// canTake reports whether the loop may take a request from the channel.
func (l *EventLoop) canTake() bool {
	return l.reqOpen && (l.st.Queued() < l.opts.MaxQueued || l.spooling())
}

// takeRequests takes requests from the channel without blocking.
func (l *EventLoop) takeRequests() bool {
	took := l.takeHeld()
	for i := 0; i < requestBatch && l.canTake() && (l.phase == phaseConnected || l.phase == phaseBackoff); i++ {
		select {
		case r, ok := <-l.requests:
			took = true
			if !ok {
				l.reqOpen, l.reqDone = false, true
				return took
			}
			l.accept(r)
		default:
			return took
		}
	}
	return took
}

// accept validates a request and queues it, or acts on it at once.
func (l *EventLoop) accept(r Request) {
	switch r := r.(type) {
	case Publish:
		pkt, err := publishPacket(r, l.opts.ProtocolVersion)
		if err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
			return
		}
		if r.QoS == 0 && l.phase != phaseConnected && l.opts.DropQoS0WhileOffline {
			l.emit(Dropped{Request: r, Reason: ErrOffline})
			return
		}
		l.enqueue(state.Pending{Packet: pkt, Tag: r}, r)
	case Subscribe:
		pkt, err := subscribePacket(r, l.opts.ProtocolVersion)
		if err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
			return
		}
		l.enqueue(state.Pending{Packet: pkt, Tag: r}, r)
	case Unsubscribe:
		pkt, err := unsubscribePacket(r, l.opts.ProtocolVersion)
		if err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
			return
		}
		l.enqueue(state.Pending{Packet: pkt, Tag: r}, r)
	case Ack:
		if err := l.ack(r); err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
		}
	case Disconnect:
		if err := requestRules(l.opts.ProtocolVersion).disconnect(r, l.opts.SessionExpiry); err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
			return
		}
		l.farewell(r.ReasonCode, r.SessionExpiry)
		l.closeConn()
		l.end(ErrDisconnected, ErrDisconnected)
	case Shutdown:
		l.reqOpen = false
		if l.phase == phaseConnected {
			l.farewell(packets.DisconnectNormalDisconnection, nil)
		}
		l.closeConn()
		l.end(ErrStopped, fmt.Errorf("%w: Shutdown request", ErrStopped))
	case Throttle:
		if err := requestRules(l.opts.ProtocolVersion).throttle(r); err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
		} else if err := l.throttle.set(r, time.Now()); err != nil {
			l.emit(RequestFailed{Request: r, Err: err})
		}
	case Reauthenticate:
		if l.opts.ProtocolVersion == 4 {
			l.emit(RequestFailed{Request: r, Err: only5("Reauthenticate")})
			return
		}
		l.reauthenticate(r)
	case Pause:
		l.paused = true
	case Resume:
		l.paused = false
	default:
		l.emit(RequestFailed{Request: r, Err: fmt.Errorf("%w: %T", ErrInvalidRequest, r)})
	}
}

func (l *EventLoop) ack(a Ack) error {
	if a.QoS == 0 {
		return nil // a QoS 0 message has no acknowledgement
	}
	if err := l.checkAck(a); err != nil {
		return err
	}
	pkt, err := l.st.Ack(a.PacketID, a.QoS, a.ReasonCode, a.session)
	if err != nil {
		return err
	}
	if l.conn == nil {
		return nil
	}
	return l.reply(pkt, 0)
}

// sendQueued writes queued requests while the window allows.
func (l *EventLoop) sendQueued() bool {
	if l.resume.Swap(false) {
		l.paused = false
	}
	l.throttleAt = time.Time{}
	if l.paused {
		return false
	}
	sent := false
	var now time.Time
	for i := 0; i < requestBatch; i++ {
		if l.throttle.rate != 0 && l.st.Queued() > 0 {
			if now.IsZero() {
				now = time.Now()
			}
			if ok, at := l.throttle.ready(now); !ok {
				l.throttleAt = at
				return sent
			}
		}
		if now.IsZero() {
			now = time.Now()
		}
		next := l.st.NextToSendAt(now)
		pkt := next.Packet
		if pkt == nil {
			// Nothing sendable now: queue empty, window full, or (with
			// Err set) out of packet ids until acks free some.
			return sent
		}
		sent = true
		if l.expired(next) {
			continue
		}
		if next.Err != nil {
			l.emit(RequestFailed{Request: requestOf(next.Pending), Err: next.Err})
			continue
		}
		if err := l.sendPending(next.Pending, pkt); err != nil {
			if refused(err, pkt) {
				l.st.Abandon(pkt)
				l.emit(RequestFailed{Request: requestOf(next.Pending), Err: l.refusal(err)})
				continue
			}
			return sent
		}
		if pub, isPub := pkt.(*packets.Publish); isPub {
			l.status.counts.msgsOut++
			l.throttle.spend()
			if pub.QoS == 0 && l.opts.NotifyQoS0 {
				if r, ok := requestOf(next.Pending).(Publish); ok {
					l.emit(Published{Request: r})
				}
			}
			if pub.QoS > 0 {
				if now.IsZero() {
					now = time.Now()
				}
				l.st.MarkSent(pkt, now)
			}
		}
	}
	return sent
}

// requestOf returns the user's request behind a queued packet, rebuilt
// from the packet when the tag was lost (restored session) or internal
// (re-subscribe).
func requestOf(p state.Pending) Request {
	if r, ok := p.Tag.(Request); ok {
		return r
	}
	switch pk := p.Packet.(type) {
	case *packets.Publish:
		return withTag(publishRequestFrom(pk), p.Tag)
	case *packets.Subscribe:
		return withTag(subscribeRequestFrom(pk), p.Tag)
	case *packets.Unsubscribe:
		return withTag(Unsubscribe{Topics: pk.Topics}, p.Tag)
	}
	return nil
}

// commit makes the iteration's session changes durable (Options.Store).
// A store that fails ends the run: durability can no longer be promised.
func (l *EventLoop) commit() bool {
	if err := l.st.Commit(); err != nil {
		l.closeConn()
		l.end(nil, fmt.Errorf("%w: %w", ErrStore, err))
		return false
	}
	return true
}

// write encodes a packet into the write buffer, flushing when it is large.
// An error for which refused is false has already ended the connection.
func (l *EventLoop) write(p packets.Packet) error {
	var err error
	if pub, ok := p.(*packets.Publish); ok {
		p, err = l.appendPublish(pub) // with a topic alias when allowed
	} else {
		err = l.wr.Append(p)
	}
	if err != nil {
		if refused(err, p) || l.leaving {
			return err
		}
		l.lost(fmt.Errorf("encoding %T: %w", p, err))
		return err
	}
	if l.dbg {
		l.logPacket("out", p)
	}
	if l.wr.Buffered() >= flushThreshold {
		if !l.flush(time.Now()) {
			return ErrConnectionLost
		}
	}
	return nil
}

// refused reports whether err from encoding p fails only the request
// behind p, leaving the connection intact (nothing was buffered): p is
// larger than the broker allows, or a publish, subscribe or unsubscribe
// the protocol version cannot express (a session saved by an MQTT 5 loop
// and resumed with ProtocolVersion 4).
func refused(err error, p packets.Packet) bool {
	var se *streamError
	if errors.As(err, &se) {
		return true
	}
	switch p.(type) {
	case *packets.Publish, *packets.Subscribe, *packets.Unsubscribe:
		return errors.Is(err, wire.ErrPacketTooLarge) || errors.Is(err, wire.ErrInvalidPacket)
	}
	// An acknowledgement, PINGREQ or AUTH that cannot be written leaves
	// the protocol unable to go on: the connection ends.
	return false
}

// refusal is the RequestFailed error of a packet refused by the encoder:
// one the protocol version cannot express is an invalid request (on MQTT
// 3.1.1, one that needs MQTT 5).
func (l *EventLoop) refusal(err error) error {
	if !errors.Is(err, wire.ErrInvalidPacket) {
		return err
	}
	if l.opts.ProtocolVersion == 4 {
		return fmt.Errorf("%w: %w: %w", ErrInvalidRequest, ErrMQTT5Only, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
}

// flush writes the buffered packets. It returns false if the connection
// ended.
func (l *EventLoop) flush(now time.Time) bool {
	// What the writes announce (a PUBREC, a new publish) must be durable
	// before it reaches the wire.
	if !l.commit() {
		return false
	}
	if l.conn == nil {
		return false
	}
	if l.wr.Buffered() > 0 {
		if err := l.wr.Flush(l.conn, now.Add(l.opts.WriteTimeout)); err != nil {
			if l.leaving {
				// The farewell gives up; its caller ends the run.
				l.closeConn()
				return false
			}
			if l.stopRequested(err) {
				return false
			}
			l.lost(fmt.Errorf("writing to %s: %w", l.server, err))
			return false
		}
		l.ka.Sent(now)
	}
	return len(l.streams.open) == 0 || l.flushStreams(now)
}

// wait blocks until something may have happened: bytes from the broker, a
// request, a timer, the context, or a wake-up from Close/Resume.
//
// When a reply is expected soon and no request can be taken right now, the
// loop parks in the runtime's poller for a short slice: that is the fast
// path for request/acknowledge round trips. Otherwise it arms the
// connection's readiness channel and selects over everything.
func (l *EventLoop) wait(now time.Time) {
	if l.waitOver() {
		if l.pollReady() {
			l.waitEnded = false // bytes came: handle them first
		}
		return
	}
	deadline := now.Add(farFuture)
	if _, due := l.ka.Check(now); !due.IsZero() {
		deadline = due
	}
	if !l.throttleAt.IsZero() && l.throttleAt.Before(deadline) {
		deadline = l.throttleAt
	}
	if l.opts.AckTimeout > 0 {
		if sent, ok := l.st.OldestUnacked(); ok && l.ackReference(sent).Add(l.opts.AckTimeout).Before(deadline) {
			deadline = l.ackReference(sent).Add(l.opts.AckTimeout)
		}
	}
	if t := l.migrationWake(); !t.IsZero() && t.Before(deadline) {
		deadline = t
	}
	if t := l.streamsWake(); !t.IsZero() && t.Before(deadline) {
		deadline = t
	}
	canTake := l.canTake()
	expectReply := l.st.Outstanding() > 0 || l.ka.PingOutstanding()
	streaming := l.burst && now.Sub(l.rxAt) < streamWindow
	// With data streams open, replies may come on any stream: the poller
	// parks on one, so only the readiness, which covers all, will do.
	poll := len(l.streams.open) == 0
	if poll && (expectReply || streaming) && !l.pollMissed && (!canTake || len(l.requests) == 0) {
		slice := pollSlice
		if !expectReply {
			slice = streamSlice
		}
		until := deadline
		if s := now.Add(slice); s.Before(until) {
			until = s
		}
		br, batching := l.conn.(netio.BatchReader)
		lowat := 0
		switch {
		case !batching:
		case !expectReply && l.rate >= batchMin:
			lowat = min(l.rate, batchMax)
		case expectReply && l.st.Outstanding() >= replyBatchMin:
			// A pipelined publisher: let a quarter of the outstanding
			// acknowledgements gather, rather than wake for each.
			lowat = min(l.st.Outstanding()/4*minAckSize, batchMax)
		}
		batching = lowat > 0
		if !expectReply && !batching && l.parkForBroker(deadline, canTake) {
			// Nothing but the broker and the calls that cut a park can
			// bring work: the stream needs no slice (and no timer).
			return
		}
		// A plain stream park (nothing expected back, no batch) may be cut
		// short by Wake, Ack, Resume and Close: it is where a goroutine
		// that awaits one call after another finds the loop after each
		// answer. A park for a reply ends with that reply, and a batched
		// one within batchDelay; cutting them measured slower (a woken
		// loop takes one request where the reply would bring several).
		// The park is announced before the last look at the channel and
		// the acks: a sender that finds parking unset after its send
		// knows the loop will see its request (cutPark).
		cuttable := !expectReply && !batching
		if cuttable {
			l.parking.Store(true)
			if (canTake && len(l.requests) > 0) || l.acks.waiting.Load() {
				l.parking.Store(false)
				return
			}
		}
		var n int
		var err error
		if batching {
			// A heavy stream: let several messages gather before waking.
			if b := now.Add(batchDelay); b.Before(until) {
				until = b
			}
			l.batch.c, l.batch.br, l.batch.lowat = l.conn, br, lowat
			n, err = l.rd.FillWait(&l.batch, until)
			l.batch.c, l.batch.br = nil, nil
		} else {
			n, err = l.rd.FillWait(l.conn, until)
		}
		cut := cuttable && !l.parking.Swap(false)
		if cuttable || (batching && !expectReply) {
			l.handed = cut
		}
		if n > 0 {
			l.arrived(time.Now(), n)
		} else {
			l.rate = 0
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && cut:
			// Woken (Wake, Ack, Resume, Close): not a missed poll.
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A batched wait for a stream that found nothing waits once
			// more, plainly, before the loop goes back to the signal.
			l.pollMissed = !batching || expectReply
		default:
			l.pendingRead = err
		}
		return
	}
	l.pollMissed = false
	if poll && l.parkForBroker(deadline, canTake) {
		return
	}

	ready, err := l.conn.Arm()
	if err != nil {
		l.lost(fmt.Errorf("arming readiness on %s: %w", l.server, err))
		return
	}
	// A byte that arrived before arming may not signal: look once more.
	if n, err := l.rd.FillNow(l.conn); n > 0 || err != nil {
		l.conn.Disarm()
		l.pendingRead = err
		return
	}
	var reqs <-chan Request
	if canTake {
		reqs = l.requests
	}
	// Waiting for anything: an idle connection holds no buffers.
	l.rd.Release()
	l.wr.Release()
	l.timer.Reset(deadline.Sub(now))
	l.publishCounts()
	l.handed = false
	for {
		select {
		case r, ok := <-reqs:
			l.handed = true
			if !ok {
				l.reqOpen, l.reqDone = false, true
			} else {
				l.accept(r)
			}
		case <-ready.Signal:
		case <-ready.Shared:
			if !ready.Dispatch() {
				continue // another loop's socket: it was woken, keep waiting
			}
		case <-ready.Tick:
		case <-l.ctx.Done():
		case <-l.waitDone:
			l.waitEnded = true
		case <-l.timer.C:
		case <-l.wake:
			l.handed = true
		}
		break
	}
	if l.conn != nil {
		l.conn.Disarm()
	}
}

// parkForBroker is the long wait when nothing but the broker, a timer and
// the calls that cut a park (cutPark) can give the loop work: the
// application promised to Wake the loop after each request it sends
// (Options.WakeAfterSend), or there is no requests channel. The loop
// parks in the runtime's poller until the socket is readable or deadline,
// holding no buffer. It reports whether it waited (or found work while
// getting ready to); false means the transport or the situation needs
// the select.
func (l *EventLoop) parkForBroker(deadline time.Time, canTake bool) bool {
	if l.handed {
		// The last wait ended with work from another goroutine (a
		// request, an ack, Wake): more is likely to follow, and the
		// select takes it straight from its sender, which is cheaper than
		// a park that the sender must cut (measured: QoS 0 publishes
		// awaited one after the other ran at 0.7× the rate). The next
		// wait that ends with bytes or a timer comes back here.
		return false
	}
	rw := l.pollerParker()
	if rw == nil {
		return false
	}
	l.rd.Release()
	l.wr.Release()
	l.publishCounts()
	woken, cut, err := l.parkInPoller(rw, deadline, true, canTake)
	if err != nil {
		l.pendingRead = err
	}
	l.handed = woken || cut
	return true
}

// pollerParker returns the connection's way of waiting in the runtime's
// poller when the loop may wait there for long (see parkForBroker), or
// nil: the transport cannot (not a TCP or Unix socket), someone may send
// a request without waking the loop, or NextContext's context must end
// the wait too.
func (l *EventLoop) pollerParker() netio.ReadableWaiter {
	if l.waitDone != nil {
		return nil
	}
	if l.requests != nil && !(l.opts.WakeAfterSend && cap(l.requests) > 0) {
		return nil
	}
	rw, ok := l.conn.(netio.ReadableWaiter)
	if !ok {
		return nil
	}
	if _, ok := l.conn.(netio.WaitInterrupter); !ok {
		return nil
	}
	return rw
}

// parkInPoller parks in the poller until the socket is readable, deadline
// passes, the run's context ends or someone hands the loop work (cutPark:
// Wake, Ack, Close, Pause, Resume). With watchWork, requests waiting on
// the channel (when canTake) and acks waiting end it before it begins.
// It reports whether the loop's wake channel had a value (Close, Pause,
// Resume, Ack), which it consumed, and whether the park was cut or not
// begun because work was waiting; a read error found while waiting is
// returned for the next read to report.
func (l *EventLoop) parkInPoller(rw netio.ReadableWaiter, deadline time.Time, watchWork, canTake bool) (woken, cut bool, err error) {
	if l.ctxStop == nil && l.ctx.Done() != nil {
		// The context package runs cutPark on a goroutine of its own when
		// the context ends; nothing runs before that.
		l.ctxStop = context.AfterFunc(l.ctx, l.cutPark)
	}
	// Announced before the last look: whoever hands the loop work after
	// this is either seen below or finds parking set and cuts the park.
	l.parking.Store(true)
	select {
	case <-l.wake:
		l.parking.Store(false)
		return true, false, nil
	default:
	}
	if l.ctx.Err() != nil || (watchWork && ((canTake && len(l.requests) > 0) || l.acks.waiting.Load())) {
		l.parking.Store(false)
		return false, true, nil
	}
	err = rw.WaitReadable(deadline)
	cut = !l.parking.Swap(false)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return false, cut, err
}

// stopCtxWatch undoes parkForBroker's context.AfterFunc.
func (l *EventLoop) stopCtxWatch() {
	if l.ctxStop != nil {
		l.ctxStop()
		l.ctxStop = nil
	}
}

// pollReady reads what has arrived without waiting, for a NextContext
// whose context has ended, and reports whether anything (bytes or an
// error) came. The readiness set is asked directly: a read skips the
// socket until a dispatch says it is readable, and the signal that leads
// to one is handled only by a loop that waits.
func (l *EventLoop) pollReady() bool {
	ready, err := l.conn.Arm()
	if err != nil {
		l.lost(fmt.Errorf("arming readiness on %s: %w", l.server, err))
		return true
	}
	if ready.Shared != nil {
		ready.Dispatch()
	}
	n, err := l.rd.FillNow(l.conn)
	l.conn.Disarm()
	l.pendingRead = err
	return n > 0 || err != nil
}

// batchWait presents a netio.BatchReader to the framing as a plain
// source whose ReadWait waits for lowat bytes.
type batchWait struct {
	c     netio.Conn
	br    netio.BatchReader
	lowat int
}

func (b *batchWait) ReadNow(p []byte) (int, error) { return b.c.ReadNow(p) }

func (b *batchWait) ReadWait(p []byte, deadline time.Time) (int, error) {
	return b.br.ReadWaitBatch(p, b.lowat, deadline)
}
