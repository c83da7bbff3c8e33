package netio

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseServer(t *testing.T) {
	ok := []struct{ in, scheme, host, path string }{
		{"mqtt://broker", "mqtt", "broker:1883", ""},
		{"mqtt://broker/", "mqtt", "broker:1883", ""},
		{"tcp://broker:8883", "tcp", "broker:8883", ""},
		{"MQTT://Broker.example:1884", "mqtt", "Broker.example:1884", ""},
		{"mqtt://[::1]", "mqtt", "[::1]:1883", ""},
		{"mqtt://[::1]:2000", "mqtt", "[::1]:2000", ""},
		{"mqtt://user:pw@broker", "mqtt", "broker:1883", ""},
		{"unix:///tmp/x.sock", "unix", "", "/tmp/x.sock"},
		{"unix:run/x.sock", "unix", "", "run/x.sock"},
		{"mqtts://broker", "mqtts", "broker:8883", ""},
		{"ssl://broker:1884", "ssl", "broker:1884", ""},
		{"tls://broker", "tls", "broker:8883", ""},
		{"ws://broker", "ws", "broker:80", "/mqtt"},
		{"ws://broker:8080/", "ws", "broker:8080", "/"},
		{"wss://broker/custom/path", "wss", "broker:443", "/custom/path"},
		{"quic://broker", "quic", "broker:14567", ""},
		{"quic://[::1]:4433", "quic", "[::1]:4433", ""},
	}
	for _, c := range ok {
		u, err := ParseServer(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if u.Scheme != c.scheme || u.Host != c.host || u.Path != c.path {
			t.Errorf("%s: scheme %q host %q path %q", c.in, u.Scheme, u.Host, u.Path)
		}
	}
	if u, _ := ParseServer("mqtt://user:pw@broker"); u.User.Username() != "user" {
		t.Errorf("user information dropped: %v", u.User)
	}

	bad := []struct {
		in          string
		unsupported bool
		mention     string
	}{
		{"http://broker", true, `"http"`},
		{"coap://broker:5683", true, `"coap"`},
		{"quic://broker/path", false, "/path"},
		{"ws://", false, "no host"},
		{"broker:1883", true, `"broker"`},
		{"localhost", true, "mqtt://"},
		{"mqtt://", false, "no host"},
		{"mqtt://:1883", false, "no host"},
		{"mqtt:broker", false, "no host"},
		{"mqtt://broker/some/path", false, "/some/path"},
		{"unix://host/x.sock", false, "unix:///"},
		{"unix://", false, "no socket path"},
		{"mqtt://broker:port", false, "port"},
		{"mqtt://bro ker", false, "invalid"},
	}
	for _, c := range bad {
		_, err := ParseServer(c.in)
		if err == nil {
			t.Errorf("%s: accepted", c.in)
			continue
		}
		if errors.Is(err, ErrUnsupportedScheme) != c.unsupported {
			t.Errorf("%s: %v: ErrUnsupportedScheme = %t", c.in, err, !c.unsupported)
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: error %q does not mention %q", c.in, err, c.mention)
		}
	}
}

func TestParseServerHidesPassword(t *testing.T) {
	for _, raw := range []string{
		"http://user:s3cret@broker",
		"wss://user:s3cret@broker:bad",
		"mqtt://user:s3cret@broker:bad",
		"mqtt://user:s3cret@broker/path",
		"mqtt://user:s3cret@bro ker",
		"mqtt://user:s3cret%zz@broker",
		"unix://user:s3cret@host/x",
		"mqtt://user:s3cret@",
	} {
		_, err := ParseServer(raw)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %v", raw, err)
		}
	}
}

func TestDial(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		ln := listen(t, network)
		server := "mqtt://user:pw@" + ln.Addr().String()
		if network == "unix" {
			server = "unix://" + ln.Addr().String()
		}
		called := false
		d := &net.Dialer{Control: func(string, string, syscall.RawConn) error { called = true; return nil }}
		c, err := Dial(context.Background(), server, DialOptions{Dialer: d})
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		if !called {
			t.Errorf("%s: DialOptions.Dialer not used", server)
		}
		peer, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if c.Transport() != network {
			t.Errorf("Transport() = %q", c.Transport())
		}
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		if err := peer.SetReadDeadline(time.Now().Add(guard)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if _, err := peer.Read(buf); err != nil || string(buf) != "hi" {
			t.Fatalf("peer read %q, %v", buf, err)
		}
		c.Close()
		peer.Close()
	}
}

func TestDialErrors(t *testing.T) {
	// A port with no listener: listen, note the port, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(context.Background(), "mqtt://user:s3cret@"+addr, DialOptions{})
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q: must name %s and hide the password", err, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}

	_, err = Dial(context.Background(), "unix://"+filepath.Join(shortDir(t), "none.sock"), DialOptions{})
	if err == nil {
		t.Fatal("dial to a missing socket succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, "mqtt://"+addr, DialOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}

	if _, err := Dial(context.Background(), "https://user:s3cret@broker", DialOptions{}); !errors.Is(err, ErrUnsupportedScheme) ||
		strings.Contains(err.Error(), "s3cret") {
		t.Errorf("unsupported scheme: %v", err)
	}
}
