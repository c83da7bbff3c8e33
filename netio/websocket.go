package netio

import (
	"context"
	"errors"
	"net/url"
)

// dialWebSocket dials ws:// and wss://. Placeholder until the WebSocket
// transport lands.
func dialWebSocket(ctx context.Context, u *url.URL, opts DialOptions) (Conn, error) {
	return nil, errors.New("WebSocket transport not implemented yet")
}
