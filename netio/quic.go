package netio

import (
	"context"
	"errors"
	"net/url"
)

// dialQUIC dials quic://. Placeholder until the QUIC transport lands.
func dialQUIC(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	return nil, errors.New("QUIC transport not implemented yet")
}
