package eventloop_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/leakcheck"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/testbroker"
)

// wsBrokers starts the embedded broker with its WebSocket listener and
// mosquitto with a websockets listener; url is the ws:// URL.
func wsBrokers(t *testing.T) []brokerCase {
	t.Helper()
	mb := testbroker.StartT(t, testbroker.Options{WebSocket: true})
	cases := []brokerCase{{name: "mochi", url: mb.WebSocketURL(), mochi: mb}}
	if ws, _ := startMosquittoWS(t); ws != "" {
		cases = append(cases, brokerCase{name: "mosquitto", url: ws})
	}
	return cases
}

// startMosquittoWS starts mosquitto with a websockets listener and returns
// its ws:// URL and its plain MQTT URL, or "" when mosquitto is missing
// (which fails the test under CI).
func startMosquittoWS(t *testing.T) (ws, tcp string) {
	t.Helper()
	if !mosquittoInstalled() {
		startMosquitto(t) // fails under CI, logs otherwise
		return "", ""
	}
	m := mosquitto.Start(t, mosquitto.Options{
		Extra:     []string{"max_queued_messages 0"},
		Listeners: []mosquitto.Listener{{WebSocket: true}},
	})
	addr := m.ListenerAddr(0)
	// The harness waits for the MQTT listener; mosquitto opens the
	// websockets one just after it. Readiness check, not a sleep:
	if !leakcheck.Poll(testTimeout, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("mosquitto's websockets listener at %s never accepted", addr)
	}
	return "ws://" + addr + "/mqtt", m.URL()
}

func forEachWSBroker(t *testing.T, f func(t *testing.T, b brokerCase)) {
	for _, b := range wsBrokers(t) {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// TestWebSocketQoSRoundTrip publishes at QoS 0, 1 and 2 over ws:// to a
// topic the same client subscribed to.
func TestWebSocketQoSRoundTrip(t *testing.T) {
	forEachWSBroker(t, func(t *testing.T, b brokerCase) {
		c := newClient(t, b.url, eventloop.Options{})
		if conn := c.expectConnected(); conn.Transport != "ws" {
			t.Fatalf("Connected.Transport = %q, want ws", conn.Transport)
		}
		topic := uniqueID("ws-rt")
		c.subscribe(eventloop.Filter{Topic: topic + "/#", QoS: 2})
		const perQoS = 50
		for q := byte(0); q <= 2; q++ {
			for i := 0; i < perQoS; i++ {
				c.send(eventloop.Publish{Topic: fmt.Sprintf("%s/%d", topic, q), QoS: q, Payload: []byte(fmt.Sprintf("%d-%d", q, i))})
			}
		}
		got := map[string]int{}
		acked := map[byte]int{}
		for len(got) < 3*perQoS || acked[1] < perQoS || acked[2] < perQoS {
			switch n := c.next().(type) {
			case eventloop.Message:
				if want := n.Topic[len(n.Topic)-1] - '0'; n.QoS != want {
					t.Fatalf("message on %s arrived at QoS %d", n.Topic, n.QoS)
				}
				got[string(n.Payload)]++
			case eventloop.Published:
				if n.Err != nil {
					t.Fatalf("publish refused: %v", n.Err)
				}
				acked[n.Request.QoS]++
			case eventloop.RequestFailed, eventloop.Disconnected:
				t.Fatalf("unexpected %#v", n)
			}
		}
		for k, v := range got {
			if v != 1 {
				t.Errorf("message %s arrived %d times", k, v)
			}
		}
	})
}

// TestWebSocketLargePayload sends 1 MiB messages between a WebSocket and
// a TCP client, both ways. mosquitto 2.0's websockets listener sends a
// large message to a client in pieces of a few KiB, one per turn of its
// main loop (~100 ms each: a 1 MiB message takes 25 s, with any client;
// eclipse-mosquitto/mosquitto#1390), so towards the WebSocket client it
// gets a 16 KiB message and the 1 MiB one only in the other direction.
func TestWebSocketLargePayload(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mb := testbroker.StartT(t, testbroker.Options{WebSocket: true})
	type tc struct {
		name, ws, tcp string
		toWS          []byte
	}
	cases := []tc{{"mochi", mb.WebSocketURL(), mb.URL(), payload}}
	if ws, tcp := startMosquittoWS(t); ws != "" {
		cases = append(cases, tc{"mosquitto", ws, tcp, payload[:16<<10]})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := startClient(t, tc.ws, eventloop.Options{})
			p := startClient(t, tc.tcp, eventloop.Options{})
			topic := uniqueID("ws-large")
			w.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
			p.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: tc.toWS})
			expect[eventloop.Published](p)
			if m := expect[eventloop.Message](w); !bytes.Equal(m.Payload, tc.toWS) {
				t.Fatalf("payload received over ws differs: %d bytes", len(m.Payload))
			}
			p.subscribe(eventloop.Filter{Topic: topic + "/back", QoS: 2})
			w.send(eventloop.Publish{Topic: topic + "/back", QoS: 2, Payload: payload})
			expect[eventloop.Published](w)
			if m := expect[eventloop.Message](p); !bytes.Equal(m.Payload, payload) {
				t.Fatalf("payload sent over ws differs: %d bytes", len(m.Payload))
			}
		})
	}
}

// TestWebSocketHeader checks that Options.WebSocketHeader and the URL's
// path reach the server with the upgrade request.
func TestWebSocketHeader(t *testing.T) {
	mb := testbroker.StartT(t, testbroker.Options{WebSocket: true})
	url := mb.WebSocketURL()
	url = url[:len(url)-len("/mqtt")] + "/custom/path"
	c := startClient(t, url, eventloop.Options{
		WebSocketHeader: http.Header{"Authorization": {"Bearer s3cret"}, "X-Client": {"mqttloop"}},
	})
	topic := uniqueID("ws-header")
	c.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
	ups := mb.WebSocketUpgrades()
	if len(ups) != 1 {
		t.Fatalf("%d upgrade requests, want 1", len(ups))
	}
	u := ups[0]
	if u.Path != "/custom/path" || u.Header.Get("Authorization") != "Bearer s3cret" || u.Header.Get("X-Client") != "mqttloop" || u.Header.Get("Sec-Websocket-Protocol") != "mqtt" {
		t.Fatalf("upgrade request %+v", u)
	}
}
