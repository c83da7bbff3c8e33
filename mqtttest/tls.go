package mqtttest

import (
	"crypto/tls"
	"fmt"
	"net"
)

// tlsListenerID is the id of the TLS listener (Options.TLS).
const tlsListenerID = "mqtttest-tls"

// listenTLS adds the TLS listener: the same tracked listener as the TCP
// one, over tls.NewListener. The TLS handshake runs on the connection's
// goroutine, at mochi's first read, so Close stops it like any read.
func (b *Broker) listenTLS(cfg *tls.Config, addr string) error {
	tcp, err := net.Listen("tcp", listenAddr(addr))
	if err != nil {
		return fmt.Errorf("mqtttest: listen TLS: %w", err)
	}
	b.tlsAddr = tcp.Addr().String()
	ln := newListener(tlsListenerID, tls.NewListener(tcp, cfg.Clone()), b.owners, b.hook,
		func() { b.disconnectListener(tlsListenerID) })
	if err := b.srv.AddListener(ln); err != nil {
		_ = tcp.Close()
		return fmt.Errorf("mqtttest: add TLS listener: %w", err)
	}
	return nil
}

// TLSURL returns the TLS listener's address as "mqtts://127.0.0.1:PORT",
// or "" when the broker was started without Options.TLS.
func (b *Broker) TLSURL() string {
	if b.tlsAddr == "" {
		return ""
	}
	return "mqtts://" + b.tlsAddr
}

// TLSAddr returns the TLS listener's address as "127.0.0.1:PORT", or ""
// without Options.TLS.
func (b *Broker) TLSAddr() string { return b.tlsAddr }
