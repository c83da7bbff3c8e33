package netio

import (
	"context"
	"errors"
	"net/url"
)

// dialTLS dials mqtts:// (and ssl://, tls://). Placeholder until the TLS
// transport lands.
func dialTLS(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	return nil, errors.New("TLS transport not implemented yet")
}
