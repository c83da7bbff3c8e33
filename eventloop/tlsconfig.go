package eventloop

import (
	"crypto/tls"
	"os"
)

// sessionCacheSize is the number of TLS session tickets the loop keeps
// when the user's configuration has no cache (one per server is enough;
// a few spare cover servers that issue several).
const sessionCacheSize = 16

// tlsConfig returns the TLS configuration the loop dials with: a clone of
// the user's with a session cache that lives as long as the loop (TLS
// resumption and QUIC 0-RTT across reconnects) and the key log the user
// asked for. It never turns verification off.
func tlsConfig(o *Options) *tls.Config {
	var c *tls.Config
	if o.TLSConfig == nil {
		c = &tls.Config{}
	} else {
		c = o.TLSConfig.Clone()
	}
	if c.ClientSessionCache == nil {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
	}
	switch {
	case o.KeyLogWriter != nil:
		c.KeyLogWriter = o.KeyLogWriter
	case o.KeyLogFromEnv && os.Getenv("SSLKEYLOGFILE") != "":
		c.KeyLogWriter = keyLogFile(os.Getenv("SSLKEYLOGFILE"))
	}
	return c
}

// keyLogFile appends each write to the file it names. Handshakes write a
// few lines each, so opening the file per write costs nothing that
// matters, and the loop holds no file open between handshakes.
type keyLogFile string

func (f keyLogFile) Write(p []byte) (int, error) {
	file, err := os.OpenFile(string(f), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := file.Write(p)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return n, err
}
