package eventloop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/keepalive"
	"github.com/mqttloop/mqttloop/netio"
)

// connect dials the next server, sends CONNECT and waits for CONNACK, all
// within Options.ConnectTimeout. On success the loop is connected and the
// session's replay is written; on failure the connection is lost.
func (l *EventLoop) connect() {
	server := l.opts.Servers[l.rotation.Next()]
	l.server = redact(server)
	start := time.Now()
	deadline := start.Add(l.opts.ConnectTimeout)

	dialCtx, cancel := context.WithDeadline(l.ctx, deadline)
	creds, err := l.credentials(dialCtx, server)
	if err != nil {
		cancel()
		if l.ctx.Err() != nil {
			return // checkStop ends the run
		}
		l.connectFailed(err)
		return
	}
	var conn netio.Conn
	if l.opts.Dial != nil {
		conn, err = l.opts.Dial(dialCtx, server)
		if err == nil && conn == nil {
			err = errors.New("Options.Dial returned no connection and no error")
		}
	} else {
		conn, err = netio.Dial(dialCtx, server, l.dialOptions(creds))
	}
	cancel()
	if err != nil {
		if l.ctx.Err() != nil {
			return // checkStop ends the run
		}
		l.connectFailed(fmt.Errorf("connecting to %s: %w", l.server, err))
		return
	}
	l.conn = conn
	l.live.Store(&conn)
	l.interruptWrites(conn)
	if l.closed.Load() { // Close raced with the dial
		return
	}
	if l.rd == nil {
		l.rd = wire.NewReader(int(l.opts.MaxPacketSize))
		l.wr = wire.NewWriter(0)
	}
	l.rd.Reset()
	l.wr.Reset()
	l.resetStreams()
	l.rd.SetMaxPacketSize(int(l.opts.MaxPacketSize))
	l.wr.SetMaxPacketSize(0)
	// The codec of the connection, for both directions. New validated
	// the version: this cannot fail.
	codec, _ := wire.CodecFor(l.opts.ProtocolVersion)
	l.rd.SetCodec(codec)
	l.wr.SetCodec(codec)

	authCtx, authCancel := context.WithDeadline(l.ctx, deadline)
	defer authCancel()
	connect := l.connectPacket(creds)
	if l.opts.Authenticator != nil {
		if err := l.startAuth(authCtx, connect); err != nil {
			l.connectFailed(fmt.Errorf("connecting to %s: %w", l.server, err))
			return
		}
	}
	if err := l.wr.Append(connect); err != nil {
		l.connectFailed(fmt.Errorf("encoding CONNECT: %w", err))
		return
	}
	if l.dbg {
		l.logPacket("out", connect)
	}
	if err := l.wr.Flush(conn, deadline); err != nil {
		l.connectFailed(fmt.Errorf("sending CONNECT to %s: %w", l.server, err))
		return
	}

	ack, ackUser, err := l.awaitConnack(authCtx, deadline)
	if err != nil {
		if l.ctx.Err() != nil || l.closed.Load() {
			return
		}
		l.connectFailed(err)
		return
	}
	if ack.ReasonCode >= 0x80 {
		rerr := reasonCodeError("CONNACK", ack.ReasonCode, ack.Properties)
		if ack.ReasonCode == 0x84 { // permanent: the run ends under every policy
			if l.opts.ProtocolVersion == 5 {
				l.connectFailed(fmt.Errorf("connecting to %s: broker refused MQTT 5 (unsupported protocol version); set ProtocolVersion 4 if it speaks MQTT 3.1.1: %w", l.server, rerr))
			} else {
				l.connectFailed(fmt.Errorf("connecting to %s: broker refused MQTT 3.1.1 (unsupported protocol version): %w", l.server, rerr))
			}
			return
		}
		l.connectFailed(fmt.Errorf("connecting to %s: %w", l.server, rerr))
		return
	}
	if err := checkConnack(ack); err != nil {
		l.connectFailed(fmt.Errorf("connecting to %s: %w", l.server, err))
		return
	}
	if l.opts.Authenticator != nil {
		if err := l.finishAuth(authCtx, ack.Properties); err != nil {
			l.connectFailed(fmt.Errorf("connecting to %s: %w", l.server, err))
			return
		}
	}
	l.connected(ack, ackUser, time.Now())
}

func (l *EventLoop) connectFailed(err error) { l.connectionDown(err, false) }

// awaitConnack reads until CONNACK, answering the AUTH packets of
// enhanced authentication on the way; any other packet first is a
// protocol error.
func (l *EventLoop) awaitConnack(ctx context.Context, deadline time.Time) (*packets.Connack, wire.UserProps, error) {
	for {
		cp, err := l.rd.Next()
		if err != nil {
			return nil, "", fmt.Errorf("reading CONNACK from %s: %w", l.server, err)
		}
		if cp != nil {
			if l.dbg {
				l.logPacket("in", cp.Content)
			}
			switch p := cp.Content.(type) {
			case *packets.Connack:
				return p, cp.User(), nil
			case *packets.Disconnect:
				return nil, "", fmt.Errorf("connecting to %s: %w", l.server, reasonCodeError("DISCONNECT", p.ReasonCode, p.Properties))
			case *packets.Auth:
				reply, err := l.continueAuth(ctx, p)
				if err != nil {
					return nil, "", fmt.Errorf("connecting to %s: %w", l.server, err)
				}
				if err := l.wr.Append(reply); err != nil {
					return nil, "", fmt.Errorf("encoding AUTH: %w", err)
				}
				if l.dbg {
					l.logPacket("out", reply)
				}
				if err := l.wr.Flush(l.conn, deadline); err != nil {
					return nil, "", fmt.Errorf("sending AUTH to %s: %w", l.server, err)
				}
				continue
			default:
				return nil, "", fmt.Errorf("%w: %s sent %T before CONNACK", ErrProtocol, l.server, cp.Content)
			}
		}
		if err := l.waitReadable(deadline); err != nil {
			if errors.Is(err, io.EOF) && l.protocolVersion() == 5 {
				// Some 3.1.1-only brokers close the connection instead of
				// answering an MQTT 5 CONNECT; say so, the cause may be
				// the network too, so the policy still decides.
				return nil, "", fmt.Errorf("%w (a broker that speaks only MQTT 3.1.1 may close the connection like this; see Options.ProtocolVersion)", err)
			}
			return nil, "", err
		}
	}
}

// waitReadable reads at least one byte into the reader, or fails at the
// deadline, on context cancellation or Close. It waits in the runtime's
// poller when the loop may (see parkForBroker; requests are not taken
// while connecting, so only Close and the context can end the wait
// early), else in a select over the connection's readiness.
func (l *EventLoop) waitReadable(deadline time.Time) error {
	rw := l.pollerParker()
	var ready netio.Readiness
	if rw == nil {
		var err error
		if ready, err = l.conn.Arm(); err != nil {
			return err
		}
		defer l.conn.Disarm()
	}
	for {
		n, err := l.rd.FillNow(l.conn)
		if err != nil {
			return fmt.Errorf("reading from %s: %w", l.server, err)
		}
		if n > 0 {
			return nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("no CONNACK from %s within %v: %w", l.server, l.opts.ConnectTimeout, context.DeadlineExceeded)
		}
		if rw != nil {
			woken, _, err := l.parkInPoller(rw, deadline, false, false)
			if err != nil {
				return fmt.Errorf("reading from %s: %w", l.server, err)
			}
			if err := l.ctx.Err(); err != nil {
				return err
			}
			if woken && l.closed.Load() {
				return ErrStopped
			}
			continue
		}
		l.timer.Reset(deadline.Sub(now))
		select {
		case <-ready.Signal:
		case <-ready.Shared:
			ready.Dispatch() // whether ours or not, reading once more is cheap
		case <-ready.Tick:
		case <-l.timer.C:
		case <-l.ctx.Done():
			return l.ctx.Err()
		case <-l.wake:
			if l.closed.Load() {
				return ErrStopped
			}
		}
	}
}

// connected applies a successful CONNACK.
func (l *EventLoop) connected(ack *packets.Connack, ackUser wire.UserProps, now time.Time) {
	l.connects++
	l.attempt = 0
	l.roundErrs = nil
	l.rotation.NewRound()
	l.upSince = now
	l.phase = phaseConnected
	l.pollMissed = false
	l.pendingRead = nil
	l.reauthing = false
	l.rmWarned = false
	if ack.Properties != nil && ack.Properties.AssignedClientID != "" {
		l.assignedID = ack.Properties.AssignedClientID
	}
	if !ack.SessionPresent && l.multiStream() {
		l.streamsSessionLost()
	}
	resumed := l.st.Connected(ack, !l.opts.NoResubscribe)
	lim := l.st.Limits()
	l.wr.SetMaxPacketSize(int(lim.MaximumPacketSize))
	l.resetAliases(lim.TopicAliasMaximum)

	ka := l.opts.KeepAlive
	if ack.Properties != nil && ack.Properties.ServerKeepAlive != nil {
		ka = time.Duration(*ack.Properties.ServerKeepAlive) * time.Second
	}
	l.ka = keepalive.New(ka, l.opts.PingTimeout, now)

	c := Connected{
		Server:            l.server,
		Transport:         l.conn.Transport(),
		ProtocolVersion:   l.protocolVersion(),
		SessionPresent:    ack.SessionPresent,
		AssignedClientID:  l.assignedID,
		KeepAlive:         ka,
		ReceiveMaximum:    lim.ReceiveMaximum,
		MaximumPacketSize: lim.MaximumPacketSize,
		MaximumQoS:        lim.MaximumQoS,
		RetainAvailable:   lim.RetainAvailable,
		Replayed:          len(resumed.Replay),
		Requeued:          resumed.Requeued,
		Resubscribed:      resumed.Resubscribed,
		Used0RTT:          used0RTT(l.conn),
	}
	l.fillConnack(&c, ack, ackUser)
	l.statusUp(c.Transport, now)
	l.emit(c)
	for _, done := range resumed.Completed {
		l.emit(publishedFrom(done))
	}
	for _, p := range resumed.Replay {
		err := l.writeReplay(p)
		if err == nil {
			if _, isPub := p.(*packets.Publish); isPub {
				l.status.counts.msgsOut++
			}
			l.st.MarkSent(p, now)
			continue
		}
		if !refused(err, p) {
			return // the connection is already down
		}
		// The broker's limit shrank below a message in flight: it can
		// never be delivered on this broker.
		if pub, ok := p.(*packets.Publish); ok {
			l.st.Abandon(pub)
			l.emit(RequestFailed{Request: publishRequestFrom(pub), Err: l.refusal(err)})
		}
	}
}

// connectPacket builds CONNECT from the options. On MQTT 3.1.1 it has no
// properties, and the Clean Session flag is CleanStart on every connection
// (see Options.ProtocolVersion); New refused what 3.1.1 cannot carry. On
// MQTT 5 Clean Start applies to the loop's first connection only.
func (l *EventLoop) connectPacket(creds Credentials) *packets.Connect {
	o := &l.opts
	v5 := o.ProtocolVersion != 4
	c := &packets.Connect{
		ProtocolName:    "MQTT",
		ProtocolVersion: 5,
		ClientID:        o.ClientID,
		KeepAlive:       uint16(o.KeepAlive / time.Second),
		CleanStart:      o.CleanStart && l.connects == 0,
	}
	if !v5 {
		c.ProtocolVersion, c.CleanStart = 4, o.CleanStart
	}
	if w := o.Will; w != nil {
		c.WillFlag = true
		c.WillTopic = w.Topic
		c.WillMessage = w.Payload
		c.WillQOS = w.QoS
		c.WillRetain = w.Retain
	}
	if !v5 {
		applyCredentials(c, creds)
		return c
	}
	if c.ClientID == "" && l.assignedID != "" {
		c.ClientID = l.assignedID
	}
	c.Properties = &packets.Properties{}
	if o.SessionExpiry > 0 {
		secs := wholeSeconds(o.SessionExpiry)
		c.Properties.SessionExpiryInterval = &secs
	}
	mps := o.MaxPacketSize
	c.Properties.MaximumPacketSize = &mps
	if o.ReceiveMaximum > 0 {
		rm := o.ReceiveMaximum
		c.Properties.ReceiveMaximum = &rm
	}
	if o.TopicAliasMaximum > 0 {
		tam := o.TopicAliasMaximum
		c.Properties.TopicAliasMaximum = &tam
	}
	if o.RequestResponseInformation {
		one := byte(1)
		c.Properties.RequestResponseInfo = &one
	}
	if w := o.Will; w != nil {
		c.WillProperties = toPacketProps(w.Properties)
		if w.Delay > 0 {
			secs := wholeSeconds(w.Delay)
			c.WillProperties.WillDelayInterval = &secs
		}
	}
	applyCredentials(c, creds)
	return c
}

// dialOptions returns the transport options of the next dial.
func (l *EventLoop) dialOptions(creds Credentials) netio.DialOptions {
	return netio.DialOptions{
		TLS:    l.tls,
		Header: creds.WebSocketHeader,
		Proxy:  l.proxy(),
		QUIC: netio.QUICOptions{
			KeepAlive:        l.opts.KeepAlive,
			HandshakeTimeout: l.opts.QUICHandshakeTimeout,
			Enable0RTT:       l.opts.QUIC0RTT,
		},
	}
}

// used0RTT reports whether c sent CONNECT as accepted 0-RTT data.
func used0RTT(c netio.Conn) bool {
	e, ok := c.(netio.EarlyDataReporter)
	return ok && e.Used0RTT()
}

// protocolVersion is the MQTT version the loop speaks: 5 or 4.
func (l *EventLoop) protocolVersion() byte {
	if l.opts.ProtocolVersion == 4 {
		return 4
	}
	return 5
}
