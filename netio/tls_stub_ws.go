package netio

import (
	"context"
	"crypto/tls"
	"errors"
)

// handshakeTLS is a TEMPORARY stub on branch ws so that wss:// compiles
// before the TLS transport lands. The real handshakeTLS lives in
// netio/tls.go (branch tls); the integrator deletes this file at merge.
func handshakeTLS(ctx context.Context, inner Conn, cfg *tls.Config) (Conn, error) {
	return nil, errors.New("TLS transport not implemented yet (wss:// needs handshakeTLS from netio/tls.go)")
}
