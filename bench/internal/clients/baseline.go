package clients

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/keepalive"
	"github.com/mqttloop/mqttloop/state"
)

// The reader-goroutine baseline, ported from eventloop/bench_test.go (TCP
// only): one goroutine reads the socket with blocking reads, frames and
// decodes packets (netio.Reader) and sends them on a channel; Next, on the
// caller's goroutine, handles them with the same state.MqttState and
// netio.Writer as the loop (one flush per iteration) and, with nothing to
// do, blocks in a select over that channel, the requests, the context and
// the keepalive timer.

type baselineClient struct {
	nc   net.Conn
	conn blockingConn
	wr   *wire.Writer
	st   *state.MqttState
	ka   *keepalive.Timer
	ctx  context.Context

	reqs    <-chan eventloop.Request
	reqOpen bool
	reqDone bool

	pkts    chan *wire.Packet
	quit    chan struct{}
	rdone   chan struct{}
	rerr    error
	timer   *time.Timer
	timerAt time.Time

	events []eventloop.Notification
	head   int
	endErr error
}

// blockingConn adapts a net.Conn to the framing's source for the
// baseline's reader: ReadWait is a plain blocking Read.
type blockingConn struct{ net.Conn }

func (c blockingConn) ReadNow([]byte) (int, error) {
	return 0, errors.New("baseline: ReadNow not used")
}
func (c blockingConn) ReadWait(p []byte, _ time.Time) (int, error) { return c.Read(p) }

const (
	baselineBatch     = 256
	baselinePktBuffer = 256
)

func dialBaseline(ctx context.Context, url, id string, reqs <-chan eventloop.Request, inflight int) (*baselineClient, error) {
	nc, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "mqtt://"), 30*time.Second)
	if err != nil {
		return nil, err
	}
	if inflight == 0 {
		inflight = eventloop.DefaultMaxInflight
	}
	c := &baselineClient{
		nc: nc, conn: blockingConn{nc},
		wr:      wire.NewWriter(0),
		st:      state.New(state.Config{MaxInflight: inflight}),
		ctx:     ctx,
		reqs:    reqs,
		reqOpen: reqs != nil,
		pkts:    make(chan *wire.Packet, baselinePktBuffer),
		quit:    make(chan struct{}),
		rdone:   make(chan struct{}),
		timer:   time.NewTimer(time.Hour),
	}
	c.timer.Stop()
	mps := uint32(eventloop.DefaultMaxPacketSize)
	connect := &packets.Connect{
		ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: id,
		KeepAlive: uint16(KeepAlive / time.Second), CleanStart: true,
		Properties: &packets.Properties{MaximumPacketSize: &mps},
	}
	if err := c.wr.Append(connect); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.wr.Flush(c.conn, time.Now().Add(30*time.Second)); err != nil {
		nc.Close()
		return nil, err
	}
	rd := wire.NewReader(eventloop.DefaultMaxPacketSize)
	var ack *packets.Connack
	for ack == nil {
		cp, err := rd.Next()
		if err != nil {
			nc.Close()
			return nil, err
		}
		if cp == nil {
			if _, err := rd.FillWait(c.conn, time.Time{}); err != nil {
				nc.Close()
				return nil, err
			}
			continue
		}
		a, ok := cp.Content.(*packets.Connack)
		if !ok || a.ReasonCode >= 0x80 {
			nc.Close()
			return nil, fmt.Errorf("baseline: no successful CONNACK: %#v", cp.Content)
		}
		ack = a
	}
	now := time.Now()
	c.st.Connected(ack, false)
	c.wr.SetMaxPacketSize(int(c.st.Limits().MaximumPacketSize))
	c.ka = keepalive.New(KeepAlive, eventloop.DefaultPingTimeout, now)
	go c.readLoop(rd)
	return c, nil
}

func (c *baselineClient) readLoop(rd *wire.Reader) {
	defer close(c.rdone)
	defer close(c.pkts)
	for {
		for {
			cp, err := rd.Next()
			if err != nil {
				c.rerr = err
				return
			}
			if cp == nil {
				break
			}
			select {
			case c.pkts <- cp:
			case <-c.quit:
				return
			}
		}
		if _, err := rd.FillWait(c.conn, time.Time{}); err != nil {
			c.rerr = err
			return
		}
	}
}

func (c *baselineClient) Next() (eventloop.Notification, error) {
	for {
		if c.head < len(c.events) {
			n := c.events[c.head]
			c.events[c.head] = nil
			c.head++
			if c.head == len(c.events) {
				c.events, c.head = c.events[:0], 0
			}
			return n, nil
		}
		if c.endErr != nil {
			return nil, c.endErr
		}
		c.step()
	}
}

func (c *baselineClient) step() {
	if err := c.ctx.Err(); err != nil {
		c.farewell()
		c.end(fmt.Errorf("%w: %w", eventloop.ErrStopped, err))
		return
	}
	progress := false
	now := time.Now()
	got := false
drain:
	for range baselineBatch {
		select {
		case cp, ok := <-c.pkts:
			if !ok {
				c.lost()
				return
			}
			got = true
			if !c.handle(cp) {
				return
			}
		default:
			break drain
		}
	}
	if got {
		progress = true
		c.ka.Received(now)
	}
	if c.takeRequests() {
		progress = true
	}
	if c.endErr != nil {
		return
	}
	if c.sendQueued() {
		progress = true
	}
	switch act, _ := c.ka.Check(now); act {
	case keepalive.SendPing:
		_ = c.wr.Append(&packets.Pingreq{})
		c.ka.PingSent(now)
	case keepalive.Dead:
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, eventloop.ErrKeepAliveTimeout))
		return
	}
	if !c.flush(now) {
		return
	}
	if c.reqDone && c.st.Idle() {
		c.farewell()
		c.end(eventloop.ErrRequestsDone)
		return
	}
	if progress || c.head < len(c.events) {
		return
	}
	_, due := c.ka.Check(now)
	if !due.IsZero() && (c.timerAt.IsZero() || due.Before(c.timerAt)) {
		c.timer.Reset(due.Sub(now))
		c.timerAt = due
	}
	var reqs <-chan eventloop.Request
	if c.canTake() {
		reqs = c.reqs
	}
	select {
	case cp, ok := <-c.pkts:
		if !ok {
			c.lost()
			return
		}
		c.ka.Received(time.Now())
		c.handle(cp)
	case r, ok := <-reqs:
		if !ok {
			c.reqOpen, c.reqDone = false, true
		} else {
			c.accept(r)
		}
	case <-c.timer.C:
		c.timerAt = time.Time{}
	case <-c.ctx.Done():
	}
}

func (c *baselineClient) canTake() bool {
	return c.reqOpen && c.st.Queued() < eventloop.DefaultMaxQueued
}

func (c *baselineClient) takeRequests() bool {
	took := false
	for i := 0; i < baselineBatch && c.canTake(); i++ {
		select {
		case r, ok := <-c.reqs:
			took = true
			if !ok {
				c.reqOpen, c.reqDone = false, true
				return took
			}
			c.accept(r)
		default:
			return took
		}
	}
	return took
}

func (c *baselineClient) accept(r eventloop.Request) {
	switch r := r.(type) {
	case eventloop.Publish:
		p := &packets.Publish{Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain}
		c.st.Enqueue(state.Pending{Packet: p, Tag: r})
	case eventloop.Subscribe:
		p := &packets.Subscribe{Properties: &packets.Properties{}}
		for _, f := range r.Filters {
			p.Subscriptions = append(p.Subscriptions, packets.SubOptions{Topic: f.Topic, QoS: f.QoS})
		}
		c.st.Enqueue(state.Pending{Packet: p, Tag: r})
	default:
		c.emit(eventloop.RequestFailed{Request: r, Err: eventloop.ErrInvalidRequest})
	}
}

func (c *baselineClient) sendQueued() bool {
	sent := false
	for range baselineBatch {
		next := c.st.NextToSend()
		pkt := next.Packet
		if pkt == nil {
			return sent
		}
		sent = true
		if next.Err != nil {
			r, _ := next.Tag.(eventloop.Request)
			c.emit(eventloop.RequestFailed{Request: r, Err: next.Err})
			continue
		}
		if err := c.wr.Append(pkt); err != nil {
			c.st.Abandon(pkt)
			r, _ := next.Tag.(eventloop.Request)
			c.emit(eventloop.RequestFailed{Request: r, Err: err})
			continue
		}
		if c.wr.Buffered() >= 64<<10 && !c.flush(time.Now()) {
			return sent
		}
	}
	return sent
}

func (c *baselineClient) handle(pkt *wire.Packet) bool {
	ev, reply, err := c.st.HandleIncoming(&pkt.ControlPacket)
	if err != nil {
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
		return false
	}
	if reply != nil {
		if err := c.wr.Append(reply); err != nil {
			c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
			return false
		}
	}
	switch ev := ev.(type) {
	case state.Delivered:
		p := ev.Publish
		c.emit(eventloop.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, PacketID: p.PacketID})
	case state.PublishDone:
		req, _ := ev.Tag.(eventloop.Publish)
		c.emit(eventloop.Published{Request: req, ReasonCode: ev.ReasonCode})
	case state.SubscribeDone:
		req, _ := ev.Tag.(eventloop.Subscribe)
		c.emit(eventloop.Subscribed{Request: req, ReasonCodes: ev.Suback.Reasons})
	case state.BrokerDisconnect:
		c.end(fmt.Errorf("%w: broker sent DISCONNECT", eventloop.ErrConnectionLost))
		return false
	}
	return true
}

func (c *baselineClient) flush(now time.Time) bool {
	if c.wr.Buffered() == 0 {
		return true
	}
	if err := c.wr.Flush(c.conn, now.Add(eventloop.DefaultWriteTimeout)); err != nil {
		c.end(fmt.Errorf("%w: %w", eventloop.ErrConnectionLost, err))
		return false
	}
	c.ka.Sent(now)
	return true
}

func (c *baselineClient) emit(n eventloop.Notification) { c.events = append(c.events, n) }

func (c *baselineClient) farewell() {
	if c.endErr != nil {
		return
	}
	c.wr.Reset()
	if c.wr.Append(&packets.Disconnect{Properties: &packets.Properties{}}) == nil {
		_ = c.wr.Flush(c.conn, time.Now().Add(time.Second))
	}
}

func (c *baselineClient) lost() {
	c.end(fmt.Errorf("%w: baseline reader: %w", eventloop.ErrConnectionLost, c.rerr))
}

func (c *baselineClient) end(err error) {
	if c.endErr != nil {
		return
	}
	c.endErr = err
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	_ = c.nc.Close()
	<-c.rdone
	c.timer.Stop()
}

// ---- the benchmark's uses of the baseline

type baselineSub struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *baselineSub) Close() {
	s.cancel()
	<-s.done
}

func baselineSubscribe(url, id, topic string, qos byte, onMsg func()) (Subscriber, error) {
	ctx, cancel := context.WithCancel(context.Background())
	reqs := make(chan eventloop.Request, 1)
	c, err := dialBaseline(ctx, url, id, reqs, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	reqs <- eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: topic, QoS: qos}}}
	for {
		n, err := c.Next()
		if err != nil {
			cancel()
			return nil, err
		}
		if s, ok := n.(eventloop.Subscribed); ok {
			if len(s.ReasonCodes) != 1 || s.ReasonCodes[0] >= 0x80 {
				cancel()
				return nil, fmt.Errorf("baseline: subscribe refused: %v", s.ReasonCodes)
			}
			break
		}
	}
	s := &baselineSub{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			n, err := c.Next()
			if err != nil {
				return
			}
			if _, ok := n.(eventloop.Message); ok {
				onMsg()
			}
		}
	}()
	return s, nil
}

func baselinePublish(url, id, topic string, payload []byte, qos byte, n, inflight int) error {
	reqs := make(chan eventloop.Request, 1024)
	c, err := dialBaseline(context.Background(), url, id, reqs, inflight)
	if err != nil {
		return err
	}
	req := eventloop.Publish{Topic: topic, Payload: payload, QoS: qos}
	go func() {
		defer close(reqs)
		for range n {
			reqs <- req
		}
	}()
	done := 0
	for {
		ev, err := c.Next()
		if err != nil {
			if !errors.Is(err, eventloop.ErrRequestsDone) {
				return err
			}
			break
		}
		if _, ok := ev.(eventloop.Published); ok {
			done++
		}
	}
	if qos > 0 && done != n {
		return fmt.Errorf("baseline: %d of %d publishes completed", done, n)
	}
	return nil
}

func baselineRoundTrips(url, id, topic string, payload []byte, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reqs := make(chan eventloop.Request, 1)
	c, err := dialBaseline(ctx, url, id, reqs, 0)
	if err != nil {
		return nil, err
	}
	defer func() { c.farewell(); c.end(eventloop.ErrStopped) }()
	req := eventloop.Publish{Topic: topic, Payload: payload, QoS: 1}
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		reqs <- req
		for {
			ev, err := c.Next()
			if err != nil {
				return nil, err
			}
			if _, ok := ev.(eventloop.Published); ok {
				break
			}
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}
