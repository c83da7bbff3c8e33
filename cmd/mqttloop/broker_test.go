package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// waitOut waits for text on the command's stdout.
func (bg *background) waitOut(t testing.TB, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	bg.stdout.waitFor(t, ctx, text)
}

// stop interrupts the command (as SIGINT does) and returns its exit code.
func (bg *background) stop(t testing.TB) int {
	bg.cancel()
	return bg.wait(t)
}

// startBrokerCmd runs 'mqttloop broker' with args and returns it with its
// URLs by transport, once it is ready.
func startBrokerCmd(t *testing.T, args ...string) (*background, map[string]string) {
	t.Helper()
	bg := start(t, append([]string{"broker"}, args...)...)
	bg.waitOut(t, "ready\n")
	urls := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  (tcp|tls|ws|wss|quic) +(\S+)$`).FindAllStringSubmatch(bg.stdout.String(), -1) {
		urls[m[1]] = m[2]
	}
	return bg, urls
}

// TestBrokerCommand: the broker serves pub -> sub on its five listeners
// with its self-signed certificate (printed with its fingerprint and kept
// for the next start), and its persistence file keeps retained messages
// and a session across a restart.
func TestBrokerCommand(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	persist := filepath.Join(dir, "broker.json")
	args := []string{"--tcp", "127.0.0.1:0", "--tls", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--wss", "127.0.0.1:0", "--quic", "127.0.0.1:0",
		"--cert-dir", certDir, "--persist", persist}
	b, urls := startBrokerCmd(t, args...)
	out := b.stdout.String()
	if len(urls) != 5 || !strings.Contains(out, "SHA-256 fingerprint: ") || !strings.Contains(out, "(new)") {
		t.Fatalf("broker printed:\n%s", out)
	}
	ca := filepath.Join(certDir, "broker-cert.pem")
	for _, tr := range []string{"tcp", "tls", "ws", "wss", "quic"} {
		t.Run(tr, func(t *testing.T) { roundTrip(t, urls[tr], "--cafile", ca) })
	}
	// The certificate is for localhost as well as 127.0.0.1.
	mustRun(t, exitOK, "pub", "-L", strings.Replace(urls["tls"], "127.0.0.1", "localhost", 1), "--cafile", ca, "-t", "p/kept", "-m", "retained", "-r", "-q", "1")

	// A persistent session with a subscription, and a message queued for it
	// while it is away.
	session := filepath.Join(dir, "sub.session")
	mustRun(t, exitTimeout, "sub", "-L", urls["tcp"], "-t", "p/q", "-q", "1", "-W", "1", "--session-file", session)
	mustRun(t, exitOK, "pub", "-L", urls["tcp"], "-t", "p/q", "-m", "queued", "-q", "1")
	if code := b.stop(t); code != exitOK {
		t.Fatalf("broker exit %d:\n%s", code, b.stderr)
	}
	if _, err := os.Stat(persist); err != nil {
		t.Fatal(err)
	}

	// Restart on the same TCP port (the session file belongs to that
	// address).
	args[1] = strings.TrimPrefix(urls["tcp"], "mqtt://")
	b2, urls2 := startBrokerCmd(t, args...)
	if out := b2.stdout.String(); strings.Contains(out, "(new)") || !strings.Contains(out, "records restored") {
		t.Fatalf("second start printed:\n%s", out)
	}
	r := mustRun(t, exitOK, "sub", "-L", urls2["tcp"], "-t", "p/kept", "-C", "1")
	if r.stdout != "retained\n" {
		t.Fatalf("retained after restart: %q", r.stdout)
	}
	r = runCmd(t, "sub", "-L", urls2["tcp"], "-t", "p/q", "-q", "1", "-C", "1", "--session-file", session, "-d", "--connect-timeout", "5s")
	if r.code != exitOK || r.stdout != "queued\n" {
		t.Fatalf("queued message after restart: exit %d %q\n%s\nbroker:\n%s", r.code, r.stdout, r.stderr, b2.stderr)
	}
}

// TestBrokerDamagedPersistence: a persistence file that is not the
// broker's is refused with a clear error, and left as it is.
func TestBrokerDamagedPersistence(t *testing.T) {
	persist := filepath.Join(t.TempDir(), "broker.json")
	if err := os.WriteFile(persist, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, exitError, "broker", "--tcp", "127.0.0.1:0", "--tls", "", "--ws", "", "--quic", "", "--persist", persist)
	if !strings.Contains(r.stderr, "damaged") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	if b, _ := os.ReadFile(persist); string(b) != "not json" {
		t.Fatalf("the file was changed: %q", b)
	}
}

// TestBrokerPasswd: with --passwd only its users connect; a wrong password
// exits 3 and is not echoed.
func TestBrokerPasswd(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "users")
	// sha256("secret2")
	if err := os.WriteFile(pw, []byte("# users\nalice:secret1\nbob:sha256:35224d0d3465d74e855f8d69a136e79c744ea35a675d3393360a327cbf6359a2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, urls := startBrokerCmd(t, "--tcp", "127.0.0.1:0", "--tls", "", "--ws", "", "--quic", "", "--passwd", pw)
	if len(urls) != 1 { // --tls '' turns the default wss listener off too
		t.Fatalf("listeners %v", urls)
	}
	t.Setenv(passwordEnv, "secret1")
	mustRun(t, exitOK, "pub", "-L", urls["tcp"], "-t", "a", "-m", "x", "-u", "alice")
	t.Setenv(passwordEnv, "nope")
	r := mustRun(t, exitRefused, "pub", "-L", urls["tcp"], "-t", "a", "-m", "x", "-u", "alice")
	if !strings.Contains(r.stderr, "0x86") || strings.Contains(r.stderr, "nope") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	mustRun(t, exitRefused, "pub", "-L", urls["tcp"], "-t", "a", "-m", "x")
	t.Setenv(passwordEnv, "secret2")
	mustRun(t, exitOK, "pub", "-L", urls["tcp"], "-t", "a", "-m", "x", "-u", "bob")
}

// TestSubSurvivesBrokerRestart: sub reconnects when the broker goes away
// and comes back on the same port, subscribes again (the broker lost the
// session) and goes on printing; with --no-reconnect it exits 1.
func TestSubSurvivesBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--tcp", "127.0.0.1:0", "--tls", "", "--ws", "", "--quic", "", "--cert-dir", dir}
	b1, urls := startBrokerCmd(t, args...)
	u := urls["tcp"]
	sub := start(t, "sub", "-L", u, "-t", "rs/#", "-q", "1", "-C", "2", "-d")
	quitter := start(t, "sub", "-L", u, "-t", "rs/#", "--no-reconnect", "-d")
	sub.waitText(t, "subscribed:")
	quitter.waitText(t, "subscribed:")
	mustRun(t, exitOK, "pub", "-L", u, "-t", "rs/1", "-m", "before", "-q", "1")
	sub.waitOut(t, "before\n")
	if code := b1.stop(t); code != exitOK {
		t.Fatalf("broker exit %d", code)
	}
	if code := quitter.wait(t); code != exitError {
		t.Fatalf("sub --no-reconnect exit %d, want %d\n%s", code, exitError, quitter.stderr)
	}
	args[1] = strings.TrimPrefix(u, "mqtt://")
	startBrokerCmd(t, args...)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sub.stderr.waitForN(t, ctx, "subscribed:", 2)
	mustRun(t, exitOK, "pub", "-L", u, "-t", "rs/1", "-m", "after", "-q", "1")
	if code := sub.wait(t); code != exitOK || sub.stdout.String() != "before\nafter\n" {
		t.Fatalf("sub exit %d, printed %q\n%s", code, sub.stdout, sub.stderr)
	}
	if !strings.Contains(sub.stderr.String(), "reconnecting in") {
		t.Fatalf("no reconnect reported:\n%s", sub.stderr)
	}
}
