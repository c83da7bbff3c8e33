package netio

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mqttloop/mqttloop/internal/proxyserver"
)

// echoOnce accepts one connection on ln and echoes what it reads.
func echoOnce(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
}

// roundTrip writes through c and waits for the echo with ReadWait.
func roundTrip(t *testing.T, c Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 64)
	deadline := time.Now().Add(guard)
	for len(got) < len(msg) {
		n, err := c.ReadWait(buf, deadline)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// TestDialThroughProxies dials a TCP server through tinyproxy (HTTP
// CONNECT) and dante (SOCKS5, names resolved here and by the proxy), with
// and without credentials: the tunnel carries bytes both ways, and the
// connection is the proxy's socket, so the loop keeps socket readiness.
func TestDialThroughProxies(t *testing.T) {
	const user, pass = "proxyuser", "proxy-secret-1"
	proxies := []struct {
		name string
		url  string
	}{
		{"http", proxyserver.StartTinyproxy(t, proxyserver.Options{}).URL("", "")},
		{"http-auth", proxyserver.StartTinyproxy(t, proxyserver.Options{Auth: true, Username: user, Password: pass}).URL(user, pass)},
		{"socks5", proxyserver.StartDante(t, proxyserver.Options{}).URL("", "")},
		{"socks5-auth", proxyserver.StartDante(t, proxyserver.Options{Auth: true}).URL(proxyserver.DanteUser, proxyserver.DantePassword)},
	}
	for _, px := range proxies {
		for _, host := range []string{"127.0.0.1", "localhost"} {
			for _, h := range []bool{false, true} {
				if h && !strings.HasPrefix(px.url, "socks5") {
					continue
				}
				name := px.name + "/" + host
				raw := px.url
				if h {
					raw = strings.Replace(raw, "socks5://", "socks5h://", 1)
					name += "/remote-dns"
				}
				t.Run(name, func(t *testing.T) {
					p, err := ParseProxy(raw)
					if err != nil {
						t.Fatal(err)
					}
					ln := listen(t, "tcp")
					echoOnce(t, ln)
					_, port, _ := net.SplitHostPort(ln.Addr().String())
					ctx, cancel := context.WithTimeout(context.Background(), guard)
					defer cancel()
					c, err := Dial(ctx, "mqtt://"+net.JoinHostPort(host, port), DialOptions{Proxy: FixedProxy(p)})
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					assertSocket(t, c)
					roundTrip(t, c, "hello through the proxy")
				})
			}
		}
	}
}

// TestProxyWrongCredentials: refused, missing or wrong credentials give
// ErrProxyAuth, and the password appears in no error.
func TestProxyWrongCredentials(t *testing.T) {
	const secret = "wrong-secret-9"
	tiny := proxyserver.StartTinyproxy(t, proxyserver.Options{Auth: true, Username: "proxyuser", Password: "right"})
	dante := proxyserver.StartDante(t, proxyserver.Options{Auth: true})
	for _, raw := range []string{
		tiny.URL("proxyuser", secret),
		tiny.URL("", ""),
		dante.URL(proxyserver.DanteUser, secret),
		dante.URL("", ""),
	} {
		p, err := ParseProxy(raw)
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t, "tcp")
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		_, err = Dial(ctx, "mqtts://"+ln.Addr().String(), DialOptions{Proxy: FixedProxy(p)})
		cancel()
		if !errors.Is(err, ErrProxyAuth) {
			t.Errorf("%s: %v, want ErrProxyAuth", redactRaw(raw), err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the proxy password: %v", err)
		}
	}
}

// TestProxyRefusesTarget: a proxy that cannot reach the server says so
// with ErrProxy (SOCKS5 reply code, HTTP status).
func TestProxyRefusesTarget(t *testing.T) {
	ln := listen(t, "tcp")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	for _, raw := range []string{
		proxyserver.StartTinyproxy(t, proxyserver.Options{}).URL("", ""),
		proxyserver.StartDante(t, proxyserver.Options{}).URL("", ""),
	} {
		p, _ := ParseProxy(raw)
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		_, err := Dial(ctx, "mqtt://"+addr, DialOptions{Proxy: FixedProxy(p)})
		cancel()
		if !errors.Is(err, ErrProxy) || errors.Is(err, ErrProxyAuth) {
			t.Errorf("%s: %v, want ErrProxy", raw, err)
		}
	}
}

func TestParseProxy(t *testing.T) {
	for raw, want := range map[string]string{
		"socks5://u:p@proxy":     "socks5://u:p@proxy:1080",
		"socks5h://proxy:9050":   "socks5h://proxy:9050",
		"http://proxy":           "http://proxy:80",
		"http://[::1]:3128/":     "http://[::1]:3128",
		"https://proxy:3128":     "",
		"ftp://proxy":            "",
		"socks5://":              "",
		"http://u:s3cret@p/path": "",
	} {
		u, err := ParseProxy(raw)
		switch {
		case want == "" && err == nil:
			t.Errorf("%s: accepted as %s", raw, u)
		case want == "" && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: error shows the password: %v", raw, err)
		case want != "" && (err != nil || u.String() != want):
			t.Errorf("%s: %v, %v; want %s", raw, u, err, want)
		}
	}
}

func TestProxyFromEnvironment(t *testing.T) {
	env := map[string]string{
		"ALL_PROXY":   "socks5://all:1080",
		"https_proxy": "http://secure:3128",
		"NO_PROXY":    "internal.example, .corp.example,10.0.0.0/8, 192.168.1.7, direct.example:8883",
	}
	getenv := func(k string) string { return env[k] }
	for server, want := range map[string]string{
		"mqtt://broker.example:1883":      "socks5://all:1080",
		"mqtts://broker.example:8883":     "socks5://all:1080",
		"ws://broker.example/mqtt":        "socks5://all:1080", // no HTTP_PROXY: ALL_PROXY
		"wss://broker.example/mqtt":       "http://secure:3128",
		"mqtt://internal.example":         "",
		"mqtt://a.internal.example":       "",
		"mqtt://corp.example":             "",
		"mqtt://x.corp.example":           "",
		"mqtt://notcorp.example":          "socks5://all:1080",
		"mqtt://10.1.2.3":                 "",
		"mqtt://192.168.1.7":              "",
		"mqtt://192.168.1.8":              "socks5://all:1080",
		"mqtts://direct.example:8883":     "",
		"mqtt://direct.example:1883":      "socks5://all:1080",
		"quic://broker.example":           "",
		"unix:///run/mosquitto/mqtt.sock": "",
	} {
		u, err := ParseServer(server)
		if err != nil {
			t.Fatal(err)
		}
		p, err := proxyFromEnv(u, getenv)
		got := ""
		if p != nil {
			got = p.String()
		}
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", server, got, err, want)
		}
	}
	if p, _ := proxyFromEnv(&url.URL{Scheme: "mqtt", Host: "b:1883"}, func(string) string { return "" }); p != nil {
		t.Errorf("no variables set: proxy %v", p)
	}
	env["ALL_PROXY"] = "proxy.example:3128" // no scheme: http
	if p, _ := proxyFromEnv(&url.URL{Scheme: "mqtt", Host: "b:1883"}, getenv); p == nil || p.String() != "http://proxy.example:3128" {
		t.Errorf("ALL_PROXY without scheme: %v", p)
	}
}

// TestQUICRefusesProxy: QUIC is UDP and cannot go through these proxies.
func TestQUICRefusesProxy(t *testing.T) {
	p, _ := ParseProxy("socks5://127.0.0.1:1")
	_, err := Dial(context.Background(), "quic://127.0.0.1:14567", DialOptions{Proxy: FixedProxy(p)})
	if !errors.Is(err, ErrProxy) {
		t.Fatalf("quic through a proxy: %v, want ErrProxy", err)
	}
}
