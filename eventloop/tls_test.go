package eventloop_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// startTLSMosquitto starts mosquitto with a TLS listener using the test
// certificates (requiring client certificates if mutual) and returns its
// mqtts:// URL.
func startTLSMosquitto(t *testing.T, mutual bool) string {
	t.Helper()
	files, err := testcerts.Get().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := mosquitto.Start(t, mosquitto.Options{
		Extra: []string{"max_queued_messages 0"},
		Listeners: []mosquitto.Listener{{TLS: &mosquitto.TLSFiles{
			CAFile: files.CA, CertFile: files.ServerCert, KeyFile: files.ServerKey,
			RequireCertificate: mutual,
		}}},
	})
	return "mqtts://" + m.ListenerAddr(0)
}

// roundTrip subscribes and publishes at QoS 0, 1 and 2, then a burst of
// QoS 0 messages (several per TLS record when the broker batches), and
// checks every message came back.
func roundTrip(t *testing.T, c *client) {
	t.Helper()
	topic := uniqueID("tls")
	c.subscribe(eventloop.Filter{Topic: topic + "/#", QoS: 2})
	for q := byte(0); q <= 2; q++ {
		c.send(eventloop.Publish{Topic: topic + "/q", QoS: q, Payload: []byte{'q', '0' + q}})
	}
	seen := map[string]bool{}
	acks := 0
	for len(seen) < 3 || acks < 2 {
		switch n := c.next().(type) {
		case eventloop.Message:
			seen[string(n.Payload)] = true
		case eventloop.Published:
			acks++
		case eventloop.RequestFailed:
			t.Fatalf("request failed: %v", n.Err)
		case eventloop.Disconnected:
			t.Fatalf("disconnected: %v", n.Err)
		}
	}
	const burst = 500
	for i := 0; i < burst; i++ {
		c.send(eventloop.Publish{Topic: topic + "/burst", QoS: 0, Payload: []byte(fmt.Sprint(i))})
	}
	for got := 0; got < burst; {
		if m := expect[eventloop.Message](c); m.Topic == topic+"/burst" {
			if string(m.Payload) != fmt.Sprint(got) {
				t.Fatalf("burst message %d has payload %q", got, m.Payload)
			}
			got++
		}
	}
}

// TestTLSMutualMosquitto: mosquitto with require_certificate accepts a
// client with a certificate and refuses one without, with
// ErrClientCertificateRequired.
func TestTLSMutualMosquitto(t *testing.T) {
	url := startTLSMosquitto(t, true)
	c := startClient(t, url, eventloop.Options{TLSConfig: testcerts.Get().MutualClientConfig()})
	roundTrip(t, c)

	c = newClient(t, url, eventloop.Options{TLSConfig: testcerts.Get().ClientConfig()})
	err := c.end()
	mustIs(t, err, eventloop.ErrConnectionLost)
	mustIs(t, err, eventloop.ErrTLSHandshake)
	mustIs(t, err, eventloop.ErrClientCertificateRequired)
	t.Log(err)
}

// TestTLSFailures: each TLS failure ends a run (Reconnect Never) with an
// error that tells it apart.
func TestTLSFailures(t *testing.T) {
	certs := testcerts.Get()
	start := func(cert tls.Certificate, requireClient bool, maxVersion uint16) string {
		cfg := certs.ServerConfig(cert, requireClient)
		cfg.MaxVersion = maxVersion
		return mqtttest.StartT(t, mqtttest.Options{TLS: cfg}).TLSURL()
	}
	cases := []struct {
		name  string
		url   string
		cfg   *tls.Config
		check func(err error) bool
	}{
		{"unknown CA", start(certs.Untrusted, false, 0), certs.ClientConfig(), func(err error) bool {
			var e x509.UnknownAuthorityError
			return errors.As(err, &e)
		}},
		{"wrong host", start(certs.WrongHost, false, 0), certs.ClientConfig(), func(err error) bool {
			var e x509.HostnameError
			return errors.As(err, &e)
		}},
		{"expired", start(certs.Expired, false, 0), certs.ClientConfig(), func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{"no TLS config: system roots", start(certs.Server, false, 0), nil, func(err error) bool {
			var e x509.UnknownAuthorityError
			var r x509.SystemRootsError
			return errors.As(err, &e) || errors.As(err, &r)
		}},
		{"client certificate required/TLS 1.3", start(certs.Server, true, 0), certs.ClientConfig(), func(err error) bool {
			var a tls.AlertError
			return errors.Is(err, eventloop.ErrClientCertificateRequired) && errors.As(err, &a) && a == 116
		}},
		{"client certificate required/TLS 1.2", start(certs.Server, true, tls.VersionTLS12), certs.ClientConfig(), func(err error) bool {
			return errors.Is(err, eventloop.ErrClientCertificateRequired)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.url, eventloop.Options{TLSConfig: tc.cfg})
			err := c.end()
			mustIs(t, err, eventloop.ErrConnectionLost)
			mustIs(t, err, eventloop.ErrTLSHandshake)
			if !tc.check(err) {
				t.Fatalf("run error %v", err)
			}
			if !strings.HasPrefix(tc.name, "client certificate") && errors.Is(err, eventloop.ErrClientCertificateRequired) {
				t.Fatalf("%v wraps ErrClientCertificateRequired", err)
			}
			t.Log(err)
		})
	}
	// A client certificate fixes the last two.
	for _, tc := range cases[4:] {
		t.Run(tc.name+"/with certificate", func(t *testing.T) {
			c := startClient(t, tc.url, eventloop.Options{TLSConfig: certs.MutualClientConfig()})
			c.send(eventloop.Disconnect{})
			mustIs(t, c.end(), eventloop.ErrDisconnected)
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for the loop's goroutine to write
// while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTLSKeyLog: TLS secrets (mqtts:// and quic://) go to KeyLogWriter, or to $SSLKEYLOGFILE
// with KeyLogFromEnv, and nowhere otherwise.
func TestTLSKeyLog(t *testing.T) {
	certs := testcerts.Get()
	b := mqtttest.StartT(t, mqtttest.Options{TLS: certs.ServerConfig(certs.Server, false), QUIC: true})
	for _, url := range []string{b.TLSURL(), b.QUICURL()} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) { keyLog(t, url) })
	}
}

// keyLog is TestTLSKeyLog over the server at url.
func keyLog(t *testing.T, url string) {
	certs := testcerts.Get()
	run := func(opts eventloop.Options) {
		t.Helper()
		opts.TLSConfig = certs.ClientConfig()
		c := startClient(t, url, opts)
		c.send(eventloop.Disconnect{})
		mustIs(t, c.end(), eventloop.ErrDisconnected)
	}
	keyFile := filepath.Join(t.TempDir(), "keys.log")
	t.Setenv("SSLKEYLOGFILE", keyFile)

	var w lockedBuffer
	run(eventloop.Options{KeyLogWriter: &w})
	if !strings.Contains(w.String(), "CLIENT_") {
		t.Fatalf("KeyLogWriter received %q", w.String())
	}
	run(eventloop.Options{}) // the variable alone does nothing
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key log file written without KeyLogFromEnv: %v", err)
	}
	run(eventloop.Options{KeyLogFromEnv: true})
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "CLIENT_") {
		t.Fatalf("key log file holds %q", data)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key log file mode: %v %v", fi.Mode(), err)
	}
	// KeyLogWriter takes precedence over the environment.
	before := len(data)
	var w2 lockedBuffer
	run(eventloop.Options{KeyLogWriter: &w2, KeyLogFromEnv: true})
	if data, _ := os.ReadFile(keyFile); len(data) != before || !strings.Contains(w2.String(), "CLIENT_") {
		t.Fatalf("with both: file grew from %d to %d bytes, writer got %d", before, len(data), len(w2.String()))
	}
}
