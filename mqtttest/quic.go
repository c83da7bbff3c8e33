package mqtttest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/testcerts"
)

// quicListenerID is the id of the broker's QUIC listener.
const quicListenerID = "mqtttest-quic"

// quicCloseLinger bounds how long closing a QUIC connection waits for the
// client to close it after the broker ended the control stream, so that
// what the broker wrote last (a DISCONNECT) is delivered before the
// connection goes.
const quicCloseLinger = time.Second

// quicMochiListener is the broker's QUIC listener: the generic listener
// (connection and goroutine tracking) over a net.Listener that accepts
// QUIC connections and hands out each one's streams as one net.Conn.
type quicMochiListener struct{ *listener }

// Protocol implements listeners.Listener.
func (l quicMochiListener) Protocol() string { return "quic" }

// startQUIC adds a QUIC listener (MQTT over QUIC, ALPN "mqtt", 0-RTT
// allowed) on a free UDP port of 127.0.0.1, with the test server
// certificate of internal/testcerts.
func (b *Broker) startQUIC(tlsConf *tls.Config, perStreamIDs bool, addr string) error {
	ua, err := net.ResolveUDPAddr("udp", listenAddr(addr))
	if err != nil {
		return fmt.Errorf("mqtttest: QUIC address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("mqtttest: listen UDP: %w", err)
	}
	ql := &quicNetListener{udp: udp, tls: tlsConf, perStreamIDs: perStreamIDs, owners: b.owners, conns: make(chan net.Conn), done: make(chan struct{})}
	// quic-go starts its transport and server goroutines here; start them
	// on a goroutine of the broker so that they are recognised as its own
	// (and exist before the first client, like the TCP listening socket).
	started := make(chan error, 1)
	go func() {
		b.owners.add(leakcheck.CurrentID())
		started <- ql.listen()
	}()
	if err := <-started; err != nil {
		_ = udp.Close()
		return fmt.Errorf("mqtttest: listen QUIC: %w", err)
	}
	b.quicAddr = udp.LocalAddr().String()
	ln := quicMochiListener{newListener(quicListenerID, ql, b.owners, b.hook, func() { b.disconnectListener(quicListenerID) })}
	if err := b.srv.AddListener(ln); err != nil {
		_ = ql.Close()
		return fmt.Errorf("mqtttest: add QUIC listener: %w", err)
	}
	return nil
}

// QUICURL returns the address of the broker's QUIC listener as
// "quic://127.0.0.1:PORT", or "" when Options.QUIC is off. Clients must
// trust testcerts.Get().CA.
func (b *Broker) QUICURL() string {
	if b.quicAddr == "" {
		return ""
	}
	return "quic://" + b.quicAddr
}

// quicNetListener is a net.Listener over a quic-go listener: Accept
// returns each QUIC connection as a net.Conn (a quicMux) that carries the
// MQTT packets of its control stream and of its data streams, in EMQX's
// multi-stream mode (see quicmux.go).
//
// quic-go's transport and server goroutines descend from a broker
// goroutine (see startQUIC); its per-connection goroutines end when the
// connection is closed, which a goroutine of the listener does after
// Close of the connection's quicMux.
type quicNetListener struct {
	udp          *net.UDPConn
	perStreamIDs bool        // see Options.QUICPerStreamIDs
	tls          *tls.Config // nil: the test certificates, no client certificate asked
	owners       *owners
	conns        chan net.Conn
	done         chan struct{}

	tr        *quic.Transport
	ln        *quic.EarlyListener
	startOnce sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup // the accept goroutines
}

// Accept implements net.Listener.
func (l *quicNetListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() {
		l.wg.Add(1)
		go l.acceptConns()
	})
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// listen starts the quic-go listener.
func (l *quicNetListener) listen() error {
	var tlsConf *tls.Config
	if l.tls != nil {
		tlsConf = l.tls.Clone()
	} else {
		tlsConf = testcerts.Get().ServerConfig(testcerts.Get().Server, false)
	}
	tlsConf.NextProtos = []string{"mqtt"}
	l.tr = &quic.Transport{Conn: l.udp}
	// At most 10 client-opened bidirectional streams at once, the control
	// stream included: EMQX's default (peer_bidi_stream_count).
	ln, err := l.tr.ListenEarly(tlsConf, &quic.Config{Allow0RTT: true, MaxIncomingStreams: 10})
	if err != nil {
		_ = l.tr.Close()
		l.tr = nil
		return err
	}
	l.ln = ln
	return nil
}

// acceptConns accepts QUIC connections and starts a goroutine per
// connection that waits for its control stream.
func (l *quicNetListener) acceptConns() {
	defer l.wg.Done()
	l.owners.add(leakcheck.CurrentID())
	for {
		qc, err := l.ln.Accept(context.Background())
		if err != nil {
			return
		}
		l.wg.Add(1)
		go l.acceptStream(qc)
	}
}

// acceptStream hands the connection, its first stream as the control
// stream and its later streams as data streams (quicmux.go), to Accept.
func (l *quicNetListener) acceptStream(qc *quic.Conn) {
	defer l.wg.Done()
	// Closing the transport closes the connection, which ends the wait.
	st, err := qc.AcceptStream(context.Background())
	if err != nil {
		_ = qc.CloseWithError(0, "")
		return
	}
	c := newQUICMux(qc, st, l)
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// Addr implements net.Listener.
func (l *quicNetListener) Addr() net.Addr { return l.udp.LocalAddr() }

// Close implements net.Listener: it stops accepting, closes the QUIC
// listener, the transport (which closes every connection still open)
// and the UDP socket, and waits for the accept goroutines.
func (l *quicNetListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		if l.ln != nil {
			_ = l.ln.Close()
		}
		if l.tr != nil {
			_ = l.tr.Close()
		}
		_ = l.udp.Close()
		l.wg.Wait()
	})
	return nil
}
