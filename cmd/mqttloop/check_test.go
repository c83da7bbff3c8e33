package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// checkRows runs check and returns its rows by "probe version".
func checkRows(t *testing.T, want int, args ...string) map[string]checkRow {
	t.Helper()
	// --timeout is a failure guard: a loaded machine must not turn a
	// slow probe into "no".
	r := mustRun(t, want, append([]string{"check", "--json", "--timeout", "60s"}, args...)...)
	var rows []checkRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	m := map[string]checkRow{}
	for _, row := range rows {
		key := row.Probe + " " + row.Version
		if row.Probe == "transports" {
			key = row.Probe + " " + strings.Fields(row.Detail)[0]
		}
		m[key] = row
	}
	return m
}

// expect checks rows' results: key -> result, optionally with a detail
// substring after '|'.
func expect(t *testing.T, rows map[string]checkRow, want map[string]string) {
	t.Helper()
	for key, w := range want {
		res, detail, _ := strings.Cut(w, "|")
		row, ok := rows[key]
		if !ok {
			t.Errorf("no row %q", key)
			continue
		}
		if row.Result != res || !strings.Contains(row.Detail, detail) {
			t.Errorf("%s: %s (%s), want %s with %q", key, row.Result, row.Detail, res, detail)
		}
	}
}

// TestCheckEmbedded: everything works on the embedded broker (over every
// transport), except what it announces it lacks.
func TestCheckEmbedded(t *testing.T) {
	b := embedded(t, mqtttest.Options{TopicAliasMaximum: 5})
	rows := checkRows(t, exitOK, "-L", b.URL(), "--try", b.TLSURL()+","+b.WebSocketURL()+","+b.SecureWebSocketURL()+","+b.QUICURL(), "--cafile", caFile(t))
	want := map[string]string{"topicalias 5": "info|maximum 5; aliased publishes delivered", "receivemax 5": "info|1024"}
	for _, p := range []string{"connect", "qos0", "qos1", "qos2", "retained", "wildcard", "session", "will"} {
		want[p+" 5"], want[p+" 3.1.1"] = "ok", "ok"
	}
	for _, p := range []string{"shared", "subid"} {
		want[p+" 5"] = "ok"
	}
	for _, u := range []string{b.URL(), b.TLSURL(), b.WebSocketURL(), b.SecureWebSocketURL(), b.QUICURL()} {
		want["transports "+u] = "ok"
	}
	expect(t, rows, want)

	b2 := embedded(t, mqtttest.Options{NoSharedSubscriptions: true, NoSubscriptionIdentifiers: true})
	rows = checkRows(t, exitCheck, "-L", b2.URL(), "--versions", "5", "--probe", "shared,subid,qos1")
	expect(t, rows, map[string]string{"shared 5": "no|Shared Subscription Available 0", "subid 5": "no|Identifier Available 0", "qos1 5": "ok"})
	checkRows(t, exitOK, "-L", b2.URL(), "--versions", "5", "--probe", "qos1,wildcard")
	r := mustRun(t, exitOK, "check", "-L", b2.URL(), "--probe", "qos1")
	if !strings.Contains(r.stdout, "PROBE") || !strings.Contains(r.stdout, "qos1") {
		t.Fatalf("table:\n%s", r.stdout)
	}
}

// TestCheckMosquitto: check's table for mosquitto as it comes, without
// retained messages, and with a small maximum packet size.
func TestCheckMosquitto(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		m := mosquitto.Start(t, mosquitto.Options{})
		rows := checkRows(t, exitOK, "-L", m.URL())
		want := map[string]string{"packetsize 5": "info|none announced; 1 MiB round trips", "receivemax 5": "info|"}
		for _, p := range []string{"connect", "qos0", "qos1", "qos2", "retained", "wildcard", "session", "will"} {
			want[p+" 5"], want[p+" 3.1.1"] = "ok", "ok"
		}
		for _, p := range []string{"shared", "subid"} {
			want[p+" 5"] = "ok"
		}
		expect(t, rows, want)
	})
	t.Run("no-retain", func(t *testing.T) {
		m := mosquitto.Start(t, mosquitto.Options{Extra: []string{"retain_available false"}})
		rows := checkRows(t, exitCheck, "-L", m.URL(), "--probe", "retained,qos1")
		expect(t, rows, map[string]string{
			"retained 5": "no|CONNACK: Retain Available 0",
			// 3.1.1 cannot announce it: tried, the broker closes the connection.
			"retained 3.1.1": "no|tried",
			"qos1 5":         "ok", "qos1 3.1.1": "ok",
		})
		checkRows(t, exitOK, "-L", m.URL(), "--probe", "qos1,wildcard,shared")
		// pub -r is refused before it is sent: exit 3.
		r := mustRun(t, exitRefused, "pub", "-L", m.URL(), "-t", "r", "-m", "x", "-r", "-q", "1")
		if !strings.Contains(r.stderr, "retain") {
			t.Fatalf("stderr: %s", r.stderr)
		}
	})
	t.Run("max-packet-size", func(t *testing.T) {
		m := mosquitto.Start(t, mosquitto.Options{MaxPacketSize: 5000})
		rows := checkRows(t, exitOK, "-L", m.URL(), "--probe", "packetsize")
		expect(t, rows, map[string]string{
			"packetsize 5":     "info|announced 5000 bytes; 4 KiB round trips; 16 KiB: larger than announced",
			"packetsize 3.1.1": "info|none announced; 4 KiB round trips; 16 KiB: the broker closed the connection",
		})
	})
}
