package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/topic"
)

// Errors callers branch on.
var (
	// ErrRunEnded: the run ended while the call waited, or the client's
	// last run has ended and no other has started. The run's error (see
	// eventloop's Next) is wrapped too.
	ErrRunEnded = errors.New("mqttloop/client: run ended")
	// ErrRunning: Run was called while another run of the client is in
	// progress.
	ErrRunning = errors.New("mqttloop/client: a run is already in progress")
	// ErrNotSubscribed: Unsubscribe of a filter the client has no
	// subscription for.
	ErrNotSubscribed = errors.New("mqttloop/client: not subscribed")
	// ErrNeedsMQTT5: Request needs MQTT 5 (response topic and correlation
	// data).
	ErrNeedsMQTT5 = errors.New("mqttloop/client: request/response needs MQTT 5")
	// ErrNoResponseTopic: Respond to a message that names no response
	// topic.
	ErrNoResponseTopic = errors.New("mqttloop/client: the message has no response topic")
)

// Handler processes a message routed to a subscription. Returning nil
// acknowledges it (QoS 1 and 2, once every handler it went to returned
// nil); an error or a panic leaves it unacknowledged, so that the broker
// delivers it again after a reconnect. ctx ends with the run; it also lets
// the handler call the client while running on the Run goroutine (see the
// package documentation): pass it (or a context derived from it) to
// Publish, Request and the others, and do not keep it after returning.
type Handler func(ctx context.Context, m eventloop.Message) error

// Options configure a Client.
type Options struct {
	// Loop configures the event loop underneath (servers, client id,
	// session, reconnecting, TLS, ...). The client sets ManualAcks (it
	// acknowledges when handlers return) and NotifyQoS0 (so that QoS 0
	// publishes complete), and, for Request, RequestResponseInformation
	// on MQTT 5.
	Loop eventloop.Options
	// QueueSize is the capacity of the channel carrying calls to the loop
	// (default 64). Callers beyond it wait (backpressure).
	QueueSize int
	// Dispatch, if set, runs handler calls: it receives each call, for
	// the subscription with filter, as task, and must arrange for task()
	// to run once, on any goroutine (it may block to bound the work in
	// progress; it is called on the Run goroutine). Ordering is then
	// Dispatch's: run the tasks of a filter on one goroutine to keep that
	// filter in order. Nil runs every handler on the Run goroutine, in
	// arrival order.
	Dispatch func(filter string, task func())
	// HandlerError, if set, is told about every handler that returned an
	// error or panicked (err then wraps ErrHandlerPanic); the message was
	// not acknowledged. It runs where the handler ran.
	HandlerError func(filter string, m eventloop.Message, err error)
	// Unrouted, if set, handles messages that match no subscription (for
	// example, sent after Unsubscribe, or under a subscription made by an
	// earlier program with the same session). Nil acknowledges and
	// discards them.
	Unrouted Handler
	// Notify, if set, sees every notification of the loop (Connected,
	// Disconnected, Reconnecting, ...) before the client acts on it, on
	// the Run goroutine; it must not block for long.
	Notify func(n eventloop.Notification)
	// ResponseTopic is the topic Request asks responders to answer on
	// (the client subscribes to it at the first Request). Empty: the
	// broker's Response Information followed by "/responses" if the
	// broker gave one, else "mqttloop/responses/" and a random name.
	ResponseTopic string
}

// ErrHandlerPanic wraps the value a handler panicked with.
var ErrHandlerPanic = errors.New("mqttloop/client: handler panicked")

// PublishOptions are the options of one Publish.
type PublishOptions struct {
	QoS        byte
	Retain     bool
	Properties *eventloop.Properties // MQTT 5, optional
}

// Client is an MQTT client for goroutine-based programs, built on an
// eventloop.EventLoop. Create it with New and call Run on a goroutine of
// your choice; every other method may be called from any goroutine.
type Client struct {
	opts  Options
	loop  *eventloop.EventLoop
	token string // random, for the default response topic and correlation data

	mu      sync.Mutex
	cur     *run          // the run in progress, or nil
	last    *run          // the last run that ended (while cur is nil)
	started chan struct{} // closed (and replaced) when a run starts
	online  chan struct{} // closed at the first connection
	subs    topic.Tree[*sub]
	byID    map[int]*sub
	nextID  int
	subIDs  bool   // the broker supports subscription identifiers (MQTT 5)
	respInf string // Response Information from the last CONNACK
	v5      bool
	replies map[string]chan eventloop.Message
	reqSeq  uint64

	respMu    sync.Mutex // serializes the response topic's subscription
	respTopic string     // subscribed response topic ("" until the first Request)
}

type sub struct {
	filter string
	id     int // subscription identifier, 0: none
	h      Handler
}

// New checks the options and returns a Client ready to Run. It does not
// connect.
func New(opts Options) (*Client, error) {
	lo := opts.Loop
	lo.ManualAcks = true
	lo.NotifyQoS0 = true
	lo.WakeAfterSend = true // do calls Wake after each send
	v5 := lo.ProtocolVersion == 0 || lo.ProtocolVersion == 5
	if v5 {
		lo.RequestResponseInformation = true
	}
	l, err := eventloop.New(lo)
	if err != nil {
		return nil, err
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 64
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Client{
		opts:    opts,
		loop:    l,
		token:   hex.EncodeToString(b[:]),
		started: make(chan struct{}),
		online:  make(chan struct{}),
		byID:    map[int]*sub{},
		subIDs:  v5,
		v5:      v5,
		replies: map[string]chan eventloop.Message{},
	}, nil
}

// Loop returns the event loop underneath, for what the client does not
// wrap: Status (from any goroutine, during a run), State between runs,
// Close, Resume. Do not call its Run, Next or NextContext.
func (c *Client) Loop() *eventloop.EventLoop { return c.loop }

// run is one run of the client.
type run struct {
	c        *Client
	reqs     chan eventloop.Request
	events   *eventloop.Events
	ctx      context.Context // the handlers' context: the run's, marked
	done     chan struct{}   // closed when the run ended
	err      error           // why (set before done is closed)
	depth    int             // calls driving the loop from inside a handler
	handling int             // handlers running on the Run goroutine (Run goroutine only)
	backlog  []eventloop.Message
}

type runKey struct{}

// Run connects and runs the client until ctx ends or the loop ends the run
// (see eventloop's Next for the reasons), and returns why. Everything the
// client does happens inside Run, on the calling goroutine, including the
// handlers unless Options.Dispatch says otherwise. Calls waiting when the
// run ends return ErrRunEnded wrapping the same error. Run may be called
// again afterwards to continue the session.
func (c *Client) Run(ctx context.Context) error {
	r := &run{c: c, reqs: make(chan eventloop.Request, c.opts.QueueSize), done: make(chan struct{})}
	c.mu.Lock()
	if c.cur != nil {
		c.mu.Unlock()
		return ErrRunning
	}
	c.cur, c.last = r, nil
	close(c.started)
	c.started = make(chan struct{})
	c.mu.Unlock()

	r.ctx = context.WithValue(ctx, runKey{}, r)
	r.events = c.loop.Run(ctx, r.reqs)
	var err error
	for {
		var n eventloop.Notification
		if n, err = r.events.Next(); err != nil {
			break
		}
		if r.handle(n) {
			// A caller was woken: let it run before the loop waits
			// again, so that its next call is on the channel by then.
			// Its Wake would cut a park short anyway; a call already
			// there saves the park and the wakeup (measured: QoS 0
			// awaited publishes are several times faster with it).
			runtime.Gosched()
		}
		for len(r.backlog) > 0 {
			m := r.backlog[0]
			r.backlog = r.backlog[1:]
			r.deliver(m)
		}
	}
	c.mu.Lock()
	r.err = err
	c.cur, c.last = nil, r
	close(r.done)
	c.mu.Unlock()
	return err
}

// handle acts on one notification; it reports whether a waiting call was
// completed.
func (r *run) handle(n eventloop.Notification) bool {
	if r.c.opts.Notify != nil {
		r.c.opts.Notify(n)
	}
	switch n := n.(type) {
	case eventloop.Message:
		if r.depth > 0 && !r.c.isReply(n) {
			// After the handler driving the loop returns; replies go at
			// once, since a Request may be waiting for them.
			r.backlog = append(r.backlog, n)
			return false
		}
		r.deliver(n)
		return true // a reply may have completed a Request
	case eventloop.Published:
		return complete(n.Request.Tag, result{code: n.ReasonCode, err: n.Err})
	case eventloop.Subscribed:
		if len(n.ReasonCodes) > 0 {
			return complete(n.Request.Tag, result{code: n.ReasonCodes[0], err: n.Err()})
		}
	case eventloop.Unsubscribed:
		var code byte
		if len(n.ReasonCodes) > 0 {
			code = n.ReasonCodes[0]
		}
		return complete(n.Request.Tag, result{code: code, err: n.Err()})
	case eventloop.RequestFailed:
		return complete(tagOf(n.Request), result{err: n.Err})
	case eventloop.Dropped:
		return complete(tagOf(n.Request), result{err: n.Reason})
	case eventloop.Connected:
		r.c.mu.Lock()
		r.c.v5 = n.ProtocolVersion == 5
		r.c.subIDs = r.c.v5 && n.SubscriptionIdentifiersAvailable
		r.c.respInf = n.ResponseInformation
		select {
		case <-r.c.online:
		default:
			close(r.c.online)
		}
		r.c.mu.Unlock()
	}
	return false
}

func tagOf(req eventloop.Request) any {
	switch q := req.(type) {
	case eventloop.Publish:
		return q.Tag
	case eventloop.Subscribe:
		return q.Tag
	case eventloop.Unsubscribe:
		return q.Tag
	}
	return nil
}

// result is the outcome of a call handed to the loop.
type result struct {
	code byte
	err  error
}

// waiter receives the result of one call; it rides in the request's Tag.
type waiter struct{ ch chan result }

func newWaiter() *waiter { return &waiter{ch: make(chan result, 1)} }

// complete hands res to the waiter in tag, if any; it reports whether one
// was waiting.
func complete(tag any, res result) bool {
	if w, ok := tag.(*waiter); ok {
		select {
		case w.ch <- res:
			return true
		default: // completed already (a replay in a later run)
		}
	}
	return false
}

// current returns the run in progress, waiting for one to start if the
// client has not run yet.
func (c *Client) current(ctx context.Context) (*run, error) {
	for {
		c.mu.Lock()
		r, last, started := c.cur, c.last, c.started
		c.mu.Unlock()
		if r != nil {
			return r, nil
		}
		if last != nil {
			return nil, fmt.Errorf("%w: %w", ErrRunEnded, last.err)
		}
		select {
		case <-started:
		case <-ctx.Done():
			return nil, fmt.Errorf("mqttloop/client: waiting for Run: %w", context.Cause(ctx))
		}
	}
}

// awaitOnline waits for the client's first connection, which tells what
// the broker supports.
func (c *Client) awaitOnline(ctx context.Context) error {
	select {
	case <-c.online:
		return nil
	default:
	}
	r, err := c.current(ctx)
	if err != nil {
		return err
	}
	select {
	case <-c.online:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-r.done:
		return fmt.Errorf("%w: %w", ErrRunEnded, r.err)
	}
}

// inRun returns the run whose Run goroutine is calling, if the call comes
// from an inline handler of this client.
func (c *Client) inRun(ctx context.Context) *run {
	if r, ok := ctx.Value(runKey{}).(*run); ok && r.c == c && r.handling > 0 {
		return r
	}
	return nil
}

// do hands req (carrying w in its Tag) to the loop and waits for w.
func (c *Client) do(ctx context.Context, req eventloop.Request, w *waiter) (result, error) {
	if r := c.inRun(ctx); r != nil {
		return r.drive(ctx, req, w)
	}
	r, err := c.current(ctx)
	if err != nil {
		return result{}, err
	}
	select {
	case r.reqs <- req:
		// The loop may be parked for a reply or a stream without watching
		// the channel: have it take the request now.
		c.loop.Wake()
	case <-ctx.Done():
		return result{}, context.Cause(ctx)
	case <-r.done:
		return result{}, fmt.Errorf("%w: %w", ErrRunEnded, r.err)
	}
	select {
	case res := <-w.ch:
		return res, nil
	case <-ctx.Done():
		return result{}, context.Cause(ctx)
	case <-r.done:
		// The answer may have come with the run's last notifications.
		select {
		case res := <-w.ch:
			return res, nil
		default:
		}
		return result{}, fmt.Errorf("%w: %w", ErrRunEnded, r.err)
	}
}

// drive is do for a handler on the Run goroutine: it drives the loop
// itself (NextContext, so that ctx ends the wait) until w completes.
// Messages arriving meanwhile are kept for after the handler.
func (r *run) drive(ctx context.Context, req eventloop.Request, w *waiter) (result, error) {
	r.depth++
	defer func() { r.depth-- }()
	sent := false
	for {
		if !sent {
			select {
			case r.reqs <- req:
				sent = true
			default: // full: let the loop take some first
			}
		}
		if sent {
			select {
			case res := <-w.ch:
				return res, nil
			default:
			}
		}
		n, err := r.events.NextContext(ctx)
		if errors.Is(err, eventloop.ErrWaitEnded) {
			return result{}, context.Cause(ctx)
		}
		if err != nil {
			return result{}, fmt.Errorf("%w: %w", ErrRunEnded, err)
		}
		r.handle(n)
	}
}

// Publish sends a message and returns when it is done: for QoS 1 and 2,
// when the broker acknowledged it (its reason code, and a
// *eventloop.ReasonCodeError for a refusal ≥ 0x80); for QoS 0, once it
// was written to the connection. A publish the loop refuses (invalid
// topic, too large, ...) returns its error at once; see the package
// documentation for a context or the run ending first. Safe from any
// goroutine.
func (c *Client) Publish(ctx context.Context, topicName string, payload []byte, o PublishOptions) (byte, error) {
	if err := topic.ValidateName(topicName); err != nil {
		return 0, err
	}
	w := newWaiter()
	res, err := c.do(ctx, eventloop.Publish{Topic: topicName, Payload: payload, QoS: o.QoS, Retain: o.Retain, Properties: o.Properties, Tag: w}, w)
	if err != nil {
		return 0, fmt.Errorf("publishing to %q: %w", topicName, err)
	}
	if res.err != nil {
		return res.code, fmt.Errorf("publishing to %q: %w", topicName, res.err)
	}
	return res.code, nil
}

// Subscribe subscribes to f and routes the messages matching it to h, and
// returns when the broker answered: the granted QoS, or an error (the
// broker's refusal as a *eventloop.ReasonCodeError). Messages that arrive
// before the answer already go to h. Subscribing again to the same filter
// replaces its options and handler. If ctx ends first, the subscription
// may still be made, with h routed: Unsubscribe to be sure it is not.
func (c *Client) Subscribe(ctx context.Context, f eventloop.Filter, h Handler) (byte, error) {
	if err := topic.ValidateFilter(f.Topic); err != nil {
		return 0, err
	}
	if h == nil {
		return 0, fmt.Errorf("subscribing to %q: %w: nil handler", f.Topic, eventloop.ErrInvalidRequest)
	}
	// Whether the broker takes subscription identifiers is known once
	// connected.
	if c.inRun(ctx) == nil {
		if err := c.awaitOnline(ctx); err != nil {
			return 0, fmt.Errorf("subscribing to %q: %w", f.Topic, err)
		}
	}
	c.mu.Lock()
	s := &sub{filter: f.Topic, h: h}
	old, had := c.subs.Get(f.Topic)
	if had && old.id != 0 {
		s.id = old.id
	} else if c.subIDs {
		c.nextID++
		s.id = c.nextID
	}
	_ = c.subs.Set(f.Topic, s)
	if s.id != 0 {
		c.byID[s.id] = s
	}
	c.mu.Unlock()
	w := newWaiter()
	res, err := c.do(ctx, eventloop.Subscribe{Filters: []eventloop.Filter{f}, SubscriptionID: s.id, Tag: w}, w)
	if err == nil && res.err != nil {
		err = res.err
		// Refused: forget the handler, unless another Subscribe replaced it.
		c.mu.Lock()
		if cur, ok := c.subs.Get(f.Topic); ok && cur == s {
			c.subs.Delete(f.Topic)
			if s.id != 0 {
				delete(c.byID, s.id)
			}
		}
		c.mu.Unlock()
	}
	if err != nil {
		return res.code, fmt.Errorf("subscribing to %q: %w", f.Topic, err)
	}
	return res.code, nil
}

// Unsubscribe removes the subscription to filter and returns when the
// broker answered; its handler gets no message after that.
func (c *Client) Unsubscribe(ctx context.Context, filter string) error {
	c.mu.Lock()
	s, ok := c.subs.Get(filter)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("unsubscribing from %q: %w", filter, ErrNotSubscribed)
	}
	w := newWaiter()
	res, err := c.do(ctx, eventloop.Unsubscribe{Topics: []string{filter}, Tag: w}, w)
	if err == nil {
		err = res.err
	}
	var rc *eventloop.ReasonCodeError
	if errors.As(err, &rc) && rc.Code == 0x11 { // no subscription existed: gone all the same
		err = nil
	}
	if err != nil {
		return fmt.Errorf("unsubscribing from %q: %w", filter, err)
	}
	c.mu.Lock()
	if cur, ok := c.subs.Get(filter); ok && cur == s {
		c.subs.Delete(filter)
		if s.id != 0 {
			delete(c.byID, s.id)
		}
	}
	c.mu.Unlock()
	return nil
}

// deliver routes m to its handlers and acknowledges it once they all
// returned nil.
func (r *run) deliver(m eventloop.Message) {
	c := r.c
	var targets []*sub
	c.mu.Lock()
	if m.Properties != nil && len(m.Properties.SubscriptionIDs) > 0 {
		for _, id := range m.Properties.SubscriptionIDs {
			if s := c.byID[id]; s != nil && !containsSub(targets, s) {
				targets = append(targets, s)
			}
		}
	}
	if len(targets) == 0 {
		for _, s := range c.subs.Matches(m.Topic) {
			targets = append(targets, s)
		}
	}
	c.mu.Unlock()
	if len(targets) == 0 {
		if c.opts.Unrouted == nil {
			r.ack(m)
			return
		}
		targets = []*sub{{filter: "", h: c.opts.Unrouted}}
	}
	if c.opts.Dispatch == nil {
		ok := true
		r.handling++
		for _, s := range targets {
			ok = r.call(s, m) && ok
		}
		r.handling--
		if ok {
			r.ack(m)
		}
		return
	}
	j := &job{left: len(targets)}
	for _, s := range targets {
		c.opts.Dispatch(s.filter, func() {
			ok := r.call(s, m)
			if j.done(ok) {
				r.ack(m)
			}
		})
	}
}

// job counts the handler calls of one dispatched message.
type job struct {
	mu     sync.Mutex
	left   int
	failed bool
}

// done records one call; it reports true to the last one when all
// succeeded.
func (j *job) done(ok bool) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failed = j.failed || !ok
	j.left--
	return j.left == 0 && !j.failed
}

func containsSub(list []*sub, s *sub) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// call runs one handler, turning a panic into a failure.
func (r *run) call(s *sub, m eventloop.Message) (ok bool) {
	var err error
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, p)
		}
		if err != nil {
			ok = false
			if r.c.opts.HandlerError != nil {
				r.c.opts.HandlerError(s.filter, m, err)
			}
		}
	}()
	err = s.h(r.ctx, m)
	return err == nil
}

// ack acknowledges m (QoS 1 and 2), from any goroutine (EventLoop.Ack
// never waits for the loop).
func (r *run) ack(m eventloop.Message) {
	// A failed ack (the run ended, or the session the message came from
	// was lost) needs no action: the broker delivers the message again.
	_ = r.c.loop.Ack(m)
}

// Request publishes payload to topicName as an MQTT 5 request (QoS 1,
// with a response topic and correlation data) and returns the first
// response, or ctx's error when none arrived in time (set a deadline).
// Responses arriving after that are discarded. The client subscribes to
// its response topic at the first Request (see Options.ResponseTopic).
func (c *Client) Request(ctx context.Context, topicName string, payload []byte) (eventloop.Message, error) {
	rt, err := c.responseTopic(ctx)
	if err != nil {
		return eventloop.Message{}, fmt.Errorf("request to %q: %w", topicName, err)
	}
	c.mu.Lock()
	c.reqSeq++
	corr := fmt.Sprintf("%s-%d", c.token, c.reqSeq)
	ch := make(chan eventloop.Message, 1)
	c.replies[corr] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.replies, corr)
		c.mu.Unlock()
	}()
	props := &eventloop.Properties{ResponseTopic: rt, CorrelationData: []byte(corr)}
	if _, err := c.Publish(ctx, topicName, payload, PublishOptions{QoS: 1, Properties: props}); err != nil {
		return eventloop.Message{}, fmt.Errorf("request: %w", err)
	}
	if r := c.inRun(ctx); r != nil {
		return r.awaitReply(ctx, ch)
	}
	r, err := c.current(ctx)
	if err != nil {
		return eventloop.Message{}, fmt.Errorf("request to %q: %w", topicName, err)
	}
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return eventloop.Message{}, fmt.Errorf("request to %q: no response: %w", topicName, context.Cause(ctx))
	case <-r.done:
		select {
		case m := <-ch:
			return m, nil
		default:
		}
		return eventloop.Message{}, fmt.Errorf("request to %q: %w: %w", topicName, ErrRunEnded, r.err)
	}
}

// Waiting returns the number of Request calls waiting for a response.
func (c *Client) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.replies)
}

// awaitReply is Request's wait on the Run goroutine.
func (r *run) awaitReply(ctx context.Context, ch chan eventloop.Message) (eventloop.Message, error) {
	r.depth++
	defer func() { r.depth-- }()
	for {
		select {
		case m := <-ch:
			return m, nil
		default:
		}
		n, err := r.events.NextContext(ctx)
		if errors.Is(err, eventloop.ErrWaitEnded) {
			return eventloop.Message{}, fmt.Errorf("request: no response: %w", context.Cause(ctx))
		}
		if err != nil {
			return eventloop.Message{}, fmt.Errorf("request: %w: %w", ErrRunEnded, err)
		}
		r.handle(n)
	}
}

func (c *Client) isReply(m eventloop.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.respTopic != "" && m.Topic == c.respTopic
}

// responseTopic subscribes to the response topic once.
func (c *Client) responseTopic(ctx context.Context) (string, error) {
	c.respMu.Lock()
	defer c.respMu.Unlock()
	// The broker's Response Information and protocol version come with
	// the first connection.
	if err := c.awaitOnline(ctx); err != nil {
		return "", err
	}
	c.mu.Lock()
	rt, v5, inf := c.respTopic, c.v5, c.respInf
	c.mu.Unlock()
	if rt != "" {
		return rt, nil
	}
	if !v5 {
		return "", ErrNeedsMQTT5
	}
	rt = c.opts.ResponseTopic
	if rt == "" {
		if inf != "" {
			rt = strings.TrimSuffix(inf, "/") + "/responses"
		} else {
			rt = "mqttloop/responses/" + c.token
		}
	}
	if _, err := c.Subscribe(ctx, eventloop.Filter{Topic: rt, QoS: 1}, c.reply); err != nil {
		return "", fmt.Errorf("subscribing to the response topic: %w", err)
	}
	c.mu.Lock()
	c.respTopic = rt
	c.mu.Unlock()
	return rt, nil
}

// reply hands a response to its waiter; late or unknown ones are dropped.
func (c *Client) reply(_ context.Context, m eventloop.Message) error {
	if m.Properties == nil {
		return nil
	}
	c.mu.Lock()
	ch := c.replies[string(m.Properties.CorrelationData)]
	delete(c.replies, string(m.Properties.CorrelationData))
	c.mu.Unlock()
	if ch != nil {
		ch <- m // buffered, one response per request
	}
	return nil
}

// Respond publishes payload as the response to req, an MQTT 5 request (to
// its response topic, with its correlation data), and returns when done as
// Publish does.
func (c *Client) Respond(ctx context.Context, req eventloop.Message, payload []byte, o PublishOptions) (byte, error) {
	if req.Properties == nil || req.Properties.ResponseTopic == "" {
		return 0, ErrNoResponseTopic
	}
	p := eventloop.Properties{}
	if o.Properties != nil {
		p = *o.Properties
	}
	p.CorrelationData = req.Properties.CorrelationData
	o.Properties = &p
	return c.Publish(ctx, req.Properties.ResponseTopic, payload, o)
}
