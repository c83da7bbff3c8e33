package eventloop_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/proxyserver"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestThroughProxies runs a QoS 1 round trip over every TCP-based
// transport of both brokers (mqtt, mqtts, ws, wss) through a real HTTP
// CONNECT proxy (tinyproxy) and a real SOCKS5 proxy (dante), both with
// credentials.
func TestThroughProxies(t *testing.T) {
	const user, pass = "proxyuser", "proxy-secret-2"
	proxies := map[string]string{
		"http":   proxyserver.StartTinyproxy(t, proxyserver.Options{Auth: true, Username: user, Password: pass}).URL(user, pass),
		"socks5": proxyserver.StartDante(t, proxyserver.Options{Auth: true}).URL(proxyserver.DanteUser, proxyserver.DantePassword),
	}
	forEachBrokerOver(t, []string{"tcp", "tls", "ws", "wss"}, func(t *testing.T, b brokerCase) {
		if b.version == 4 {
			t.Skip("the transport, not the protocol version, is under test")
		}
		for name, proxy := range proxies {
			t.Run(name, func(t *testing.T) {
				c := b.start(t, eventloop.Options{Proxy: proxy})
				topic := uniqueID("proxied")
				c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
				c.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte("through " + name)})
				m := expect[eventloop.Message](c)
				if string(m.Payload) != "through "+name {
					t.Fatalf("got %q", m.Payload)
				}
			})
		}
	})
}

// TestProxyFromEnvironment: with the option set, ALL_PROXY routes an
// mqtt:// server through the proxy; without it the variable is ignored.
func TestProxyFromEnvironment(t *testing.T) {
	tiny := proxyserver.StartTinyproxy(t, proxyserver.Options{})
	url := startMosquitto(t)
	if url == "" {
		return
	}
	// A proxy address nothing listens on: used, it would fail.
	t.Setenv("ALL_PROXY", "http://127.0.0.1:1")
	c := startClient(t, url, eventloop.Options{})
	c.send(eventloop.Disconnect{})
	c.end()

	c = newClient(t, url, eventloop.Options{ProxyFromEnvironment: true})
	if err := c.end(); !errors.Is(err, eventloop.ErrConnectionLost) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("with ProxyFromEnvironment and a dead proxy: %v", err)
	}
	t.Setenv("ALL_PROXY", tiny.URL("", ""))
	c = startClient(t, url, eventloop.Options{ProxyFromEnvironment: true})
	c.send(eventloop.Disconnect{})
	c.end()
	if !strings.Contains(tiny.Log(), "CONNECT") {
		t.Fatalf("tinyproxy saw no CONNECT:\n%s", tiny.Log())
	}
}

// TestProxyWrongCredentialsEndRun: a proxy refusing its credentials ends
// the attempt with ErrProxyAuth, and its password shows nowhere.
func TestProxyWrongCredentialsEndRun(t *testing.T) {
	const secret = "not-the-proxy-password"
	tiny := proxyserver.StartTinyproxy(t, proxyserver.Options{Auth: true, Username: "u", Password: "right"})
	dante := proxyserver.StartDante(t, proxyserver.Options{Auth: true})
	url := startMosquitto(t)
	if url == "" {
		return
	}
	for _, proxy := range []string{tiny.URL("u", secret), dante.URL(proxyserver.DanteUser, secret)} {
		c := newClient(t, url, eventloop.Options{Proxy: proxy})
		err := c.end()
		if !errors.Is(err, eventloop.ErrProxyAuth) || !errors.Is(err, eventloop.ErrConnectionLost) {
			t.Errorf("run ended with %v, want ErrProxyAuth", err)
		}
		if strings.Contains(fmt.Sprint(err), secret) {
			t.Errorf("error shows the proxy password: %v", err)
		}
	}
	if _, err := eventloop.New(eventloop.Options{Servers: []string{url}, Proxy: "https://u:" + secret + "@proxy:3128"}); !errors.Is(err, eventloop.ErrInvalidOptions) || strings.Contains(err.Error(), secret) {
		t.Errorf("an https proxy: %v, want ErrInvalidOptions without the password", err)
	}
}

// TestProxyStartsNoGoroutine: connecting through each proxy and
// exchanging a QoS 1 publish, all in Next on the test's goroutine, starts
// no goroutine.
func TestProxyStartsNoGoroutine(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{DisableCapture: true})
	for _, proxy := range []string{
		proxyserver.StartTinyproxy(t, proxyserver.Options{}).URL("", ""),
		proxyserver.StartDante(t, proxyserver.Options{Auth: true}).URL(proxyserver.DanteUser, proxyserver.DantePassword),
	} {
		ignore := append(leakcheck.Standard(), brokerGoroutines...)
		before := leakcheck.Snapshot()
		loop, err := eventloop.New(eventloop.Options{Servers: []string{mb.URL()}, ClientID: uniqueID("proxy-nogo"), Proxy: proxy})
		if err != nil {
			t.Fatal(err)
		}
		reqs := make(chan eventloop.Request, 2)
		reqs <- eventloop.Publish{Topic: "nogo", QoS: 1}
		events := loop.Run(testContext(t), reqs)
		for {
			n, err := events.Next()
			if err != nil {
				t.Fatal(err)
			}
			if gs := leakcheck.Started(before, leakcheck.Snapshot(), ignore...); len(gs) > 0 {
				t.Fatalf("through %s the loop started goroutines:\n%s", strings.Split(proxy, "@")[len(strings.Split(proxy, "@"))-1], leakcheck.Report(gs))
			}
			if _, ok := n.(eventloop.Published); ok {
				break
			}
		}
		reqs <- eventloop.Disconnect{}
		for {
			if _, err := events.Next(); err != nil {
				break
			}
		}
	}
}
