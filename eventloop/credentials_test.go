package eventloop_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/reconnect"
)

// tokenIssuer stands for a token service: every call signs a new token,
// and the broker accepts only the newest one (older ones have expired).
type tokenIssuer struct {
	mu       sync.Mutex
	n        int
	valid    string
	failNext error // returned (once) instead of a token
	refuse   bool  // the next token is already stale when the broker sees it
}

func (ti *tokenIssuer) credentials(ctx context.Context, server string) (eventloop.Credentials, error) {
	if _, ok := ctx.Deadline(); !ok {
		return eventloop.Credentials{}, errors.New("the hook's context has no deadline")
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if err := ti.failNext; err != nil {
		ti.failNext = nil
		return eventloop.Credentials{}, err
	}
	ti.n++
	tok := fmt.Sprintf("tok-%d-secret", ti.n)
	ti.valid = tok
	if ti.refuse {
		ti.refuse = false
		ti.valid = "expired meanwhile"
	}
	return eventloop.Credentials{
		Username:        "device",
		Password:        []byte(tok),
		UserProperties:  eventloop.UserProps("attempt", fmt.Sprint(ti.n)),
		WebSocketHeader: http.Header{"Authorization": {"Bearer " + tok}},
	}, nil
}

func (ti *tokenIssuer) accept(c mqtttest.ConnectInfo) bool {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return c.Username == "device" && string(c.Password) == ti.valid
}

func (ti *tokenIssuer) calls() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return ti.n
}

// TestCredentialsFreshAtEveryConnect: the hook is called before each
// CONNECT, over TCP and WebSocket; its token, user properties and
// WebSocket header reach the broker; a token refused as bad credentials
// (0x86) and an error of the hook are retried like a failed dial, and the
// next call's credentials are used.
func TestCredentialsFreshAtEveryConnect(t *testing.T) {
	ti := &tokenIssuer{}
	mb := mqtttest.StartT(t, mqtttest.Options{WebSocket: true, Authenticate: ti.accept})
	for _, url := range []string{mb.URL(), mb.WebSocketURL()} {
		t.Run(url[:strings.Index(url, ":")], func(t *testing.T) {
			id := uniqueID("creds")
			start := ti.calls()
			c := newClient(t, url, eventloop.Options{ClientID: id, Credentials: ti.credentials,
				Reconnect: reconnect.Automatic, BackOff: quickBackOff(),
				WebSocketHeader: http.Header{"X-Fleet": {"north"}}})
			c.expectConnected()

			// The broker ends the connection; the reconnection's token is a
			// new one, refused as already expired (0x86): retried, with a
			// fresh token, because the hook can fetch one.
			ti.mu.Lock()
			ti.refuse = true
			ti.mu.Unlock()
			seq := mb.LastSeq()
			if err := mb.DisconnectClient(id, 0x98); err != nil {
				t.Fatal(err)
			}
			var refused bool
			for {
				n := c.next()
				if r, ok := n.(eventloop.Reconnecting); ok {
					var rerr *eventloop.ReasonCodeError
					if errors.As(r.Err, &rerr) && rerr.Code == 0x86 {
						refused = true
					}
				}
				if _, ok := n.(eventloop.Connected); ok {
					break
				}
			}
			if !refused {
				t.Fatal("no Reconnecting for the refused token")
			}
			if n := ti.calls() - start; n != 3 {
				t.Fatalf("hook called %d times, want 3 (one per CONNECT)", n)
			}
			last := fmt.Sprintf("tok-%d-secret", ti.calls())
			cp, err := mb.WaitMatch(testContext(t), seq, func(p mqtttest.Captured) bool {
				return p.Type == mochi.Connect && p.ClientID == id && string(p.Packet.Connect.Password) == last
			})
			if err != nil {
				t.Fatal(err)
			}
			if u := cp.Packet.Properties.User; len(u) != 1 || u[0].Key != "attempt" || u[0].Val != fmt.Sprint(ti.calls()) {
				t.Fatalf("CONNECT user properties %v", u)
			}
			if strings.HasPrefix(url, "ws") {
				ups := mb.WebSocketUpgrades()
				h := ups[len(ups)-1].Header
				if h.Get("Authorization") != "Bearer "+last || h.Get("X-Fleet") != "north" {
					t.Fatalf("last upgrade headers %v, want the fresh token and X-Fleet", h)
				}
			}

			// A hook that fails is reported and retried like a failed dial.
			errTokens := errors.New("token service unavailable")
			ti.mu.Lock()
			ti.failNext = errTokens
			ti.mu.Unlock()
			if err := mb.DisconnectClient(id, 0x98); err != nil {
				t.Fatal(err)
			}
			var failed bool
			for {
				n := c.next()
				if r, ok := n.(eventloop.Reconnecting); ok && errors.Is(r.Err, eventloop.ErrCredentials) && errors.Is(r.Err, errTokens) {
					failed = true
				}
				if _, ok := n.(eventloop.Connected); ok {
					break
				}
			}
			if !failed {
				t.Fatal("the hook's error was not reported as Reconnecting wrapping ErrCredentials")
			}
		})
	}
}

// TestCredentialsErrorEndsRun: without retries, the hook's error ends the
// run as a lost connection, wrapping ErrCredentials and the hook's error.
// A refusal of bad credentials without a hook stays permanent.
func TestCredentialsErrorEndsRun(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{Authenticate: func(c mqtttest.ConnectInfo) bool { return c.Username == "ok" }})
	errTokens := errors.New("token service unavailable")
	c := newClient(t, mb.URL(), eventloop.Options{Credentials: func(context.Context, string) (eventloop.Credentials, error) {
		return eventloop.Credentials{}, errTokens
	}})
	err := c.end()
	if !errors.Is(err, eventloop.ErrConnectionLost) || !errors.Is(err, eventloop.ErrCredentials) || !errors.Is(err, errTokens) {
		t.Fatalf("run ended with %v", err)
	}

	c = newClient(t, mb.URL(), eventloop.Options{Username: "wrong", Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	err = c.end()
	mustIs(t, err, eventloop.ErrConnectRefused)

	if _, err := eventloop.New(eventloop.Options{Servers: []string{mb.URL()}, Username: "a",
		Credentials: func(context.Context, string) (eventloop.Credentials, error) { return eventloop.Credentials{}, nil }}); !errors.Is(err, eventloop.ErrInvalidOptions) {
		t.Fatalf("New with both Username and Credentials: %v, want ErrInvalidOptions", err)
	}

	// A user name MQTT cannot carry fails the attempt, clearly.
	c = newClient(t, mb.URL(), eventloop.Options{Credentials: func(context.Context, string) (eventloop.Credentials, error) {
		return eventloop.Credentials{Username: "a\x00b", Password: []byte("pw")}, nil
	}})
	if err := c.end(); !errors.Is(err, eventloop.ErrCredentials) || !strings.Contains(err.Error(), "U+0000") {
		t.Fatalf("user name with U+0000: %v", err)
	}

	// MQTT 3.1.1 cannot carry user properties: the attempt fails clearly.
	c = newClient(t, mb.URL(), eventloop.Options{ProtocolVersion: 4, Credentials: func(context.Context, string) (eventloop.Credentials, error) {
		return eventloop.Credentials{Username: "ok", UserProperties: eventloop.UserProps("a", "b")}, nil
	}})
	err = c.end()
	if !errors.Is(err, eventloop.ErrCredentials) || !errors.Is(err, eventloop.ErrMQTT5Only) {
		t.Fatalf("3.1.1 with user properties ended with %v", err)
	}
}

// TestCredentialsNeverLogged: passwords and tokens appear in no log
// record and no error, whether the broker refuses them (MQTT) or the
// WebSocket upgrade does (HTTP 401).
func TestCredentialsNeverLogged(t *testing.T) {
	const secret = "hunter2-very-secret"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mb := mqtttest.StartT(t, mqtttest.Options{Authenticate: func(mqtttest.ConnectInfo) bool { return false }})
	var errs []error
	creds := func(context.Context, string) (eventloop.Credentials, error) {
		return eventloop.Credentials{Username: "u", Password: []byte(secret),
			WebSocketHeader: http.Header{"Authorization": {"Bearer " + secret}}}, nil
	}
	c := newClient(t, mb.URL(), eventloop.Options{Credentials: creds, Logger: logger})
	errs = append(errs, c.end())
	c = newClient(t, mb.URL(), eventloop.Options{Username: "u", Password: []byte(secret), Logger: logger})
	errs = append(errs, c.end())

	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "token rejected", http.StatusUnauthorized)
	}))
	t.Cleanup(refusing.Close)
	ws := "ws" + strings.TrimPrefix(refusing.URL, "http") + "/mqtt"
	c = newClient(t, ws, eventloop.Options{Credentials: creds, Logger: logger})
	errs = append(errs, c.end())

	for _, err := range errs {
		if err == nil {
			t.Fatal("a run with refused credentials ended without error")
		}
		t.Logf("error: %v", err)
		if strings.Contains(fmt.Sprint(err), secret) {
			t.Errorf("error reveals the secret: %v", err)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("log reveals the secret:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "CONNECT") {
		t.Errorf("the test logged no CONNECT, so it checked nothing:\n%s", logs.String())
	}
}

// TestCredentialsMosquitto: a mosquitto that requires a password accepts
// the hook's credentials, on MQTT 5 and 3.1.1, and refuses others.
func TestCredentialsMosquitto(t *testing.T) {
	if !mosquittoInstalled() {
		startMosquitto(t) // fails under CI
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(dir, "passwords")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwfile, "device", "tok-current").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	if err := os.Chmod(pwfile, 0o644); err != nil {
		t.Fatal(err)
	}
	m := mosquitto.Start(t, mosquitto.Options{Extra: []string{"allow_anonymous false", "password_file " + pwfile}})
	for _, v := range []byte{5, 4} {
		var calls int
		c := newClient(t, m.URL(), eventloop.Options{ProtocolVersion: v, Reconnect: reconnect.Automatic, BackOff: quickBackOff(),
			Credentials: func(context.Context, string) (eventloop.Credentials, error) {
				calls++
				if calls == 1 {
					return eventloop.Credentials{Username: "device", Password: []byte("tok-expired")}, nil
				}
				return eventloop.Credentials{Username: "device", Password: []byte("tok-current")}, nil
			}})
		r := expect[eventloop.Reconnecting](c)
		mustIs(t, r.Err, eventloop.ErrConnectRefused)
		c.expectConnected()
		if calls != 2 {
			t.Fatalf("v%d: hook called %d times, want 2", v, calls)
		}
	}
}
