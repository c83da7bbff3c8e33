package eventloop

import (
	"net/url"

	"github.com/mqttloop/mqttloop/netio"
)

// proxy returns the dialer's proxy choice: Options.Proxy for every server,
// the environment's with Options.ProxyFromEnvironment, or nil (direct).
func (l *EventLoop) proxy() func(*url.URL) (*url.URL, error) {
	switch {
	case l.opts.Proxy != "":
		p, _ := netio.ParseProxy(l.opts.Proxy) // checked by New
		return netio.FixedProxy(p)
	case l.opts.ProxyFromEnvironment:
		return netio.ProxyFromEnvironment
	}
	return nil
}
