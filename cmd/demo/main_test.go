package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// runDemo runs the demo with args and returns what it printed.
func runDemo(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"-count", "2", "-timeout", "60s"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustRun runs the demo, which must succeed, and checks the common story.
func mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := runDemo(t, args...)
	if err != nil {
		t.Fatalf("demo %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout, stderr)
	}
	if !strings.Contains(stdout, "done: 6 messages published and received") {
		t.Fatalf("demo %v did not finish the exchange:\n%s", args, stdout)
	}
	return stdout, stderr
}

// TestEmbeddedTransports runs the demo against the embedded broker over
// each of its listeners, with MQTT 5 and MQTT 3.1.1.
func TestEmbeddedTransports(t *testing.T) {
	for _, transport := range transports {
		for _, protocol := range []string{"5", "4"} {
			t.Run(transport+"/v"+protocol, func(t *testing.T) {
				t.Parallel()
				stdout, _ := mustRun(t, "-transport", transport, "-protocol", protocol)
				if !strings.Contains(stdout, " over "+transport+" (0-RTT: not used") {
					t.Fatalf("no Connected over %s reported:\n%s", transport, stdout)
				}
			})
		}
	}
}

// TestQUIC0RTT: with -0rtt the demo reconnects after the exchange, and
// that connection uses 0-RTT.
func TestQUIC0RTT(t *testing.T) {
	t.Parallel()
	stdout, _ := mustRun(t, "-transport", "quic", "-0rtt")
	if !strings.Contains(stdout, "over quic (0-RTT: not used") || !strings.Contains(stdout, "over quic (0-RTT: used") {
		t.Fatalf("want a first connection without and a second with 0-RTT:\n%s", stdout)
	}
}

// TestBrokerTLSFlags: -broker with a fallback list, -cafile, -cert/-key
// (the broker requires a client certificate), -servername, -user and
// -password (which is never printed).
func TestBrokerTLSFlags(t *testing.T) {
	t.Parallel()
	certs := testcerts.Get()
	b := startBroker(t, mqtttest.Options{TLS: certs.ServerConfig(certs.Server, true)})
	files, err := certs.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	missing := "unix://" + filepath.Join(t.TempDir(), "no-broker.sock")
	const password = "s3cret-pa55word"
	stdout, stderr := mustRun(t, "-broker", missing+","+b.TLSURL(),
		"-cafile", files.CA, "-cert", files.ClientCert, "-key", files.ClientKey,
		"-servername", "localhost", "-user", "demo", "-password", password, "-v")
	if !strings.Contains(stdout, "connected to "+b.TLSURL()+" over tls") {
		t.Fatalf("want a connection to %s over tls after the unix:// server failed:\n%s", b.TLSURL(), stdout)
	}
	if strings.Contains(stdout+stderr, password) {
		t.Fatal("the password was printed")
	}

	// Without the client certificate the broker refuses the handshake.
	_, _, err = runDemo(t, "-broker", b.TLSURL(), "-cafile", files.CA, "-timeout", "10s")
	if err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("without -cert/-key: %v, want the broker's demand for a client certificate", err)
	}
}

// TestInsecure: -insecure connects to a server whose CA is not trusted
// and warns loudly.
func TestInsecure(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mqtttest.Options{TLS: testcerts.Get().ServerConfig(testcerts.Get().Untrusted, false)})
	_, stderr := mustRun(t, "-broker", b.TLSURL(), "-insecure")
	if !strings.Contains(stderr, "WARNING: -insecure") {
		t.Fatalf("no warning on stderr:\n%s", stderr)
	}
}

// TestWebSocketHeader: -header goes into the upgrade request.
func TestWebSocketHeader(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mqtttest.Options{WebSocket: true})
	mustRun(t, "-broker", b.WebSocketURL(), "-header", "Authorization: Bearer demo-token", "-header", "x-demo:  1")
	ups := b.WebSocketUpgrades()
	if len(ups) == 0 {
		t.Fatal("no upgrade request")
	}
	h := ups[0].Header
	if h.Get("Authorization") != "Bearer demo-token" || h.Get("X-Demo") != "1" {
		t.Fatalf("upgrade headers %v", h)
	}
}

// TestKeyLog: -keylog writes TLS secrets to $SSLKEYLOGFILE and says so.
func TestKeyLog(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.log")
	t.Setenv("SSLKEYLOGFILE", keys)
	_, stderr := mustRun(t, "-transport", "tls", "-keylog")
	if !strings.Contains(stderr, keys) {
		t.Fatalf("stderr does not say where the keys go:\n%s", stderr)
	}
	data, err := os.ReadFile(keys)
	if err != nil || !bytes.Contains(data, []byte("CLIENT_HANDSHAKE_TRAFFIC_SECRET")) {
		t.Fatalf("key log: %v\n%s", err, data)
	}

	t.Setenv("SSLKEYLOGFILE", "")
	_, stderr = mustRun(t, "-transport", "tls", "-keylog")
	if !strings.Contains(stderr, "SSLKEYLOGFILE is not set") {
		t.Fatalf("stderr does not say that no keys are logged:\n%s", stderr)
	}
}

// TestBadFlags: bad flags and combinations give a clear usage error
// before anything connects.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-cert", "client.pem"}, "-cert needs -key"},
		{[]string{"-key", "client-key.pem"}, "-key needs -cert"},
		{[]string{"-transport", "sctp"}, `-transport "sctp": want one of tcp, tls, ws, quic`},
		{[]string{"-broker", "mqtt://127.0.0.1:1", "-transport", "tls"}, "-transport chooses the embedded broker's listener"},
		{[]string{"-protocol", "3"}, "-protocol 3: want 5 (MQTT 5) or 4 (MQTT 3.1.1)"},
		{[]string{"-count", "0"}, "-count 0"},
		{[]string{"-header", "no colon"}, "want 'Name: value'"},
		{[]string{"-broker", "mqtt://127.0.0.1:1,,mqtts://127.0.0.1:2"}, "empty URL in the list"},
		{[]string{"-broker", "127.0.0.1:1883"}, "has no scheme"},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, _, err := runDemo(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !errors.As(err, new(usageError)) {
				t.Fatalf("error %v is not a usage error", err)
			}
			if stdout != "" {
				t.Fatalf("printed before failing:\n%s", stdout)
			}
		})
	}

	// Files that cannot be used fail clearly too.
	_, _, err := runDemo(t, "-broker", "mqtts://127.0.0.1:1", "-cafile", filepath.Join(t.TempDir(), "missing.pem"))
	if err == nil || !strings.Contains(err.Error(), "-cafile") {
		t.Fatalf("missing -cafile: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = runDemo(t, "-broker", "mqtts://127.0.0.1:1", "-cafile", notPEM)
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("-cafile without certificates: %v", err)
	}
}

func startBroker(t *testing.T, opts mqtttest.Options) *mqtttest.Broker {
	t.Helper()
	opts.DisableCapture = true
	b, err := mqtttest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(fmt.Errorf("closing the broker: %w", err))
		}
	})
	return b
}
