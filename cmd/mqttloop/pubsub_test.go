package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/testcerts"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// roundTrip subscribes with sub, publishes three messages with pub over
// url and checks that sub printed them and exited.
func roundTrip(t *testing.T, url string, extra ...string) {
	t.Helper()
	topic := fmt.Sprintf("rt/%s", strings.ReplaceAll(t.Name(), "/", "_"))
	sub := start(t, append([]string{"sub", "-L", url, "-t", topic + "/#", "-q", "1", "-C", "3", "-v", "-d"}, extra...)...)
	sub.waitText(t, "subscribed:")
	mustRun(t, exitOK, append([]string{"pub", "-L", url, "-t", topic + "/x", "-q", "1", "-m", "hello", "--repeat", "3"}, extra...)...)
	if code := sub.wait(t); code != exitOK {
		t.Fatalf("sub exited %d\nstderr:\n%s", code, sub.stderr)
	}
	want := strings.Repeat(topic+"/x hello\n", 3)
	if got := sub.stdout.String(); got != want {
		t.Fatalf("sub printed %q, want %q", got, want)
	}
}

// TestPubSubEmbedded: pub -> sub round trips over every transport of the
// embedded broker, with MQTT 5 and 3.1.1.
func TestPubSubEmbedded(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	ca := caFile(t)
	for _, url := range []string{b.URL(), b.TLSURL(), b.WebSocketURL(), b.SecureWebSocketURL(), b.QUICURL()} {
		for _, v := range []string{"5", "311"} {
			t.Run(strings.SplitN(url, ":", 2)[0]+"/v"+v, func(t *testing.T) {
				t.Parallel()
				roundTrip(t, url, "-V", v, "--cafile", ca)
			})
		}
	}
}

// TestPubSubMosquitto: the same over mosquitto's TCP, WebSocket and TLS
// listeners, and -h/-p with --cafile choosing TLS.
func TestPubSubMosquitto(t *testing.T) {
	files, err := testcerts.Get().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := mosquitto.Start(t, mosquitto.Options{Listeners: []mosquitto.Listener{
		{WebSocket: true},
		{TLS: &mosquitto.TLSFiles{CAFile: files.CA, CertFile: files.ServerCert, KeyFile: files.ServerKey}},
	}})
	for _, url := range []string{m.URL(), "ws://" + m.ListenerAddr(0) + "/mqtt", "mqtts://localhost:" + strings.Split(m.ListenerAddr(1), ":")[1]} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			roundTrip(t, url, "--cafile", files.CA)
		})
	}
	t.Run("h-p-tls", func(t *testing.T) {
		port := strings.Split(m.ListenerAddr(1), ":")[1]
		mustRun(t, exitOK, "pub", "-h", "localhost", "-p", port, "--cafile", files.CA, "-t", "hp/x", "-m", "kept", "-r", "-q", "1")
		r := mustRun(t, exitOK, "sub", "-h", "localhost", "-p", port, "--cafile", files.CA, "-t", "hp/x", "-C", "1")
		if r.stdout != "kept\n" {
			t.Fatalf("sub printed %q", r.stdout)
		}
	})
}

// TestFallback: the first server of -L does not answer; the second does.
func TestFallback(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	missing := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	mustRun(t, exitOK, "pub", "-L", missing+","+b.URL(), "-t", "fb", "-m", "x", "-r", "-q", "1")
	r := mustRun(t, exitOK, "sub", "-L", missing, "-L", b.URL(), "-t", "fb", "-C", "1", "-d")
	if r.stdout != "x\n" || !strings.Contains(r.stderr, "connected to "+b.URL()) {
		t.Fatalf("stdout %q stderr:\n%s", r.stdout, r.stderr)
	}
}

// TestOutputFormats: -v, -F, --json (with properties and hex for binary
// payloads) and --hex, on retained messages.
func TestOutputFormats(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	u := b.URL()
	mustRun(t, exitOK, "pub", "-L", u, "-t", "f/text", "-m", "héllo", "-r", "-q", "1",
		"--content-type", "text/plain", "--user-property", "a=1", "--user-property", "b=2",
		"--response-topic", "f/reply", "--correlation-data", "c-1", "--message-expiry", "600", "--payload-utf8")
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte{0xff, 0x00, 0x10}, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, exitOK, "pub", "-L", u, "-t", "f/bin", "-f", bin, "-r")

	r := mustRun(t, exitOK, "sub", "-L", u, "-t", "f/text", "-C", "1", "-F", `%t|%p|%q|%r|%C|%R|%D|%P|%l\n`)
	if want := "f/text|héllo|0|1|text/plain|f/reply|c-1|a:1 b:2|6\n"; r.stdout != want {
		t.Fatalf("-F printed %q, want %q", r.stdout, want)
	}
	r = mustRun(t, exitOK, "sub", "-L", u, "-t", "f/bin", "-C", "1", "--hex", "-v")
	if r.stdout != "f/bin ff0010\n" {
		t.Fatalf("--hex printed %q", r.stdout)
	}
	r = mustRun(t, exitOK, "sub", "-L", u, "-t", "f/#", "-C", "2", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("--json printed %q", r.stdout)
	}
	got := map[string]jsonMessage{}
	for _, l := range lines {
		var m jsonMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got[m.Topic] = m
	}
	txt, bn := got["f/text"], got["f/bin"]
	if txt.Payload == nil || *txt.Payload != "héllo" || !txt.Retain || txt.Properties == nil ||
		txt.Properties.ContentType != "text/plain" || txt.Properties.CorrelationData != "c-1" ||
		len(txt.Properties.UserProperties) != 2 || !txt.Properties.PayloadUTF8 || txt.Properties.MessageExpiry == 0 {
		t.Fatalf("text message: %s", lines)
	}
	if bn.Payload != nil || bn.PayloadHex == nil || *bn.PayloadHex != "ff0010" {
		t.Fatalf("binary message: %s", lines)
	}
	// -R: the retained messages are stale; -W ends the wait for a fresh one.
	r = mustRun(t, exitTimeout, "sub", "-L", u, "-t", "f/#", "-R", "-C", "1", "-W", "1")
	if r.stdout != "" {
		t.Fatalf("-R printed %q", r.stdout)
	}
}

// TestSessionFileResume: a sub with --session-file that stops and starts
// again receives what was published in between, and nothing twice.
func TestSessionFileResume(t *testing.T) {
	for name, url := range map[string]func(t *testing.T) string{
		"embedded":  func(t *testing.T) string { return embedded(t, mqtttest.Options{}).URL() },
		"mosquitto": func(t *testing.T) string { return mosquitto.Start(t, mosquitto.Options{}).URL() },
	} {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			session := filepath.Join(t.TempDir(), "sub.session")
			sub := start(t, "sub", "-L", u, "-t", "s/#", "-q", "1", "-C", "1", "--session-file", session, "-d")
			sub.waitText(t, "subscribed:")
			mustRun(t, exitOK, "pub", "-L", u, "-t", "s/1", "-m", "one", "-q", "1")
			if code := sub.wait(t); code != exitOK || sub.stdout.String() != "one\n" {
				t.Fatalf("first run: exit %d, printed %q\n%s", code, sub.stdout, sub.stderr)
			}
			// While no sub runs:
			for _, m := range []string{"two", "three", "four"} {
				mustRun(t, exitOK, "pub", "-L", u, "-t", "s/1", "-m", m, "-q", "1")
			}
			// Two runs: the first stops after two messages, leaving the
			// third unacknowledged (if it arrived), so the broker delivers
			// it again. mochi resends a resumed session's messages in no
			// particular order; mosquitto in order.
			r2 := mustRun(t, exitOK, "sub", "-L", u, "-t", "s/#", "-q", "1", "-C", "2", "--session-file", session)
			r3 := mustRun(t, exitOK, "sub", "-L", u, "-t", "s/#", "-q", "1", "-C", "1", "--session-file", session)
			got := strings.Fields(r2.stdout + r3.stdout)
			if name == "mosquitto" {
				if strings.Join(got, " ") != "two three four" {
					t.Fatalf("the runs printed %q then %q", r2.stdout, r3.stdout)
				}
			}
			slices.Sort(got)
			if strings.Join(got, " ") != "four three two" {
				t.Fatalf("the runs printed %q then %q: want two, three and four once each", r2.stdout, r3.stdout)
			}
		})
	}
}

// TestRefusals: exit code 3 with the reason code when the broker refuses
// the connection or a publish.
func TestRefusals(t *testing.T) {
	b := embedded(t, mqtttest.Options{Authenticate: func(c mqtttest.ConnectInfo) bool {
		return c.Username == "alice" && string(c.Password) == "wonder"
	}})
	r := mustRun(t, exitRefused, "pub", "-L", b.URL(), "-t", "a", "-m", "x", "-u", "alice", "--pw-file", writeFile(t, "wrong\n"))
	if !strings.Contains(r.stderr, "0x86") || strings.Contains(r.stderr, "wrong") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	r = mustRun(t, exitOK, "pub", "-L", b.URL(), "-t", "a", "-m", "x", "-u", "alice", "--pw-file", writeFile(t, "wonder\n"))
	if strings.Contains(r.stderr, "warning") {
		t.Fatalf("warned: %s", r.stderr)
	}
	r = mustRun(t, exitOK, "pub", "-L", b.URL(), "-t", "a", "-m", "x", "-u", "alice", "-P", "wonder")
	if !strings.Contains(r.stderr, "warning: -P") {
		t.Fatalf("no warning for -P: %s", r.stderr)
	}
	t.Setenv(passwordEnv, "wonder")
	mustRun(t, exitOK, "pub", "-L", b.URL(), "-t", "a", "-m", "x", "-u", "alice")

	// mosquitto refuses a publish the ACL denies with PUBACK 0x87.
	acl := writeFile(t, "topic readwrite open/#\n")
	m := mosquitto.Start(t, mosquitto.Options{Extra: []string{"acl_file " + acl}})
	r = mustRun(t, exitRefused, "pub", "-L", m.URL(), "-t", "closed/x", "-m", "x", "-q", "1")
	if !strings.Contains(r.stderr, "0x87") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	mustRun(t, exitOK, "pub", "-L", m.URL(), "-t", "open/x", "-m", "x", "-q", "1")
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	// mosquitto, started as root, reads files as the user mosquitto: not
	// in t.TempDir (mode 0700).
	dir, err := os.MkdirTemp("", "mqttloop-cmd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPubStdin: -s sends stdin whole, -l each line.
func TestPubStdin(t *testing.T) {
	b := embedded(t, mqtttest.Options{})
	sub := start(t, "sub", "-L", b.URL(), "-t", "in/#", "-q", "1", "-C", "4", "-v", "-d")
	sub.waitText(t, "subscribed:")
	stdin = strings.NewReader("a b\nc\n")
	mustRun(t, exitOK, "pub", "-L", b.URL(), "-t", "in/s", "-s", "-q", "1")
	stdin = strings.NewReader("l1\nl2\nl3\n")
	mustRun(t, exitOK, "pub", "-L", b.URL(), "-t", "in/l", "-l", "-q", "1")
	stdin = os.Stdin
	if code := sub.wait(t); code != exitOK {
		t.Fatalf("sub exit %d", code)
	}
	if got, want := sub.stdout.String(), "in/s a b\nc\n\nin/l l1\nin/l l2\nin/l l3\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

// TestUsage: help, missing and conflicting flags.
func TestUsage(t *testing.T) {
	if r := runCmd(t); r.code != exitUsage || !strings.Contains(r.stderr, "Commands:") {
		t.Fatalf("no args: %+v", r)
	}
	r := mustRun(t, exitOK, "help")
	for _, c := range commands() {
		if !strings.Contains(r.stdout, c.name) {
			t.Fatalf("help lacks %s", c.name)
		}
	}
	for _, c := range commands() {
		r := mustRun(t, exitOK, c.name, "--help")
		if !strings.Contains(r.stderr, "Examples:") || !strings.Contains(r.stderr, "Exit codes:") {
			t.Fatalf("%s --help:\n%s", c.name, r.stderr)
		}
	}
	mustRun(t, exitUsage, "nope")
	mustRun(t, exitUsage, "pub", "-m", "x")
	mustRun(t, exitUsage, "pub", "-t", "x")
	mustRun(t, exitUsage, "pub", "-t", "x", "-m", "x", "-n")
	mustRun(t, exitUsage, "pub", "-t", "x", "-m", "x", "-q", "3")
	mustRun(t, exitUsage, "pub", "-t", "x", "-m", "x", "-L", "localhost:1883")
	mustRun(t, exitUsage, "pub", "-t", "x", "-m", "x", "-L", "mqtt://a", "-h", "b")
	mustRun(t, exitUsage, "sub")
	mustRun(t, exitUsage, "sub", "-t", "x", "-V", "7")
	if r := mustRun(t, exitUsage, "broker", "--tcp", "127.0.0.1:0", "--tls", "", "--ws", "", "--wss", "127.0.0.1:0", "--quic", ""); !strings.Contains(r.stderr, "--wss needs") {
		t.Fatalf("broker --wss without --tls: %s", r.stderr)
	}
}
