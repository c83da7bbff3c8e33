package eventloop_test

import (
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/mqtttest"
)

// TestConnackInFull: everything the embedded broker announces in its
// CONNACK reaches Connected, and Response Information only when asked for.
func TestConnackInFull(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{
		TopicAliasMaximum:         7,
		ServerKeepAlive:           20,
		NoWildcardSubscriptions:   true,
		NoSharedSubscriptions:     true,
		NoSubscriptionIdentifiers: true,
		ResponseInformation:       "reply/here",
		ServerReference:           "mqtt://other.example:1883",
		ConnackUserProperties:     []mqtttest.UserProperty{{Key: "region", Value: "eu-1"}},
	})
	c := newClient(t, mb.URL(), eventloop.Options{RequestResponseInformation: true, KeepAlive: time.Minute})
	got := c.expectConnectedFirst()
	if got.TopicAliasMaximum != 7 {
		t.Errorf("TopicAliasMaximum %d, want 7", got.TopicAliasMaximum)
	}
	if !got.ServerKeepAlive || got.KeepAlive != 20*time.Second {
		t.Errorf("ServerKeepAlive %v, KeepAlive %v; want true, 20s", got.ServerKeepAlive, got.KeepAlive)
	}
	if got.WildcardSubscriptionAvailable || got.SharedSubscriptionAvailable || got.SubscriptionIdentifiersAvailable {
		t.Errorf("wildcard/shared/subscription ids available: %v/%v/%v, want all false",
			got.WildcardSubscriptionAvailable, got.SharedSubscriptionAvailable, got.SubscriptionIdentifiersAvailable)
	}
	if got.ResponseInformation != "reply/here" {
		t.Errorf("ResponseInformation %q, want reply/here", got.ResponseInformation)
	}
	if got.ServerReference != "mqtt://other.example:1883" {
		t.Errorf("ServerReference %q", got.ServerReference)
	}
	if want := eventloop.UserProps("region", "eu-1"); got.UserProperties != want {
		t.Errorf("UserProperties %v, want %v", got.UserProperties, want)
	}

	// Not asked for: no Response Information; defaults everywhere else.
	plain := mqtttest.StartT(t, mqtttest.Options{ResponseInformation: "reply/here"})
	c = newClient(t, plain.URL(), eventloop.Options{KeepAlive: time.Minute})
	got = c.expectConnectedFirst()
	if got.ResponseInformation != "" {
		t.Errorf("ResponseInformation %q without asking for it", got.ResponseInformation)
	}
	if !got.WildcardSubscriptionAvailable || !got.SharedSubscriptionAvailable || !got.SubscriptionIdentifiersAvailable {
		t.Errorf("features reported unavailable by a broker that announced nothing: %+v", got)
	}
	if got.ServerKeepAlive || got.KeepAlive != time.Minute || got.TopicAliasMaximum != 0 {
		t.Errorf("ServerKeepAlive %v, KeepAlive %v, TopicAliasMaximum %d; want false, 1m, 0", got.ServerKeepAlive, got.KeepAlive, got.TopicAliasMaximum)
	}
}

// TestConnackMosquitto: mosquitto's CONNACK, on MQTT 5 and 3.1.1.
func TestConnackMosquitto(t *testing.T) {
	url := mosquittoURL(t, mosquitto.Options{MaxKeepalive: 15, Extra: []string{"max_topic_alias 5"}})
	if url == "" {
		return
	}
	c := newClient(t, url, eventloop.Options{KeepAlive: time.Minute, SessionExpiry: time.Hour})
	got := c.expectConnectedFirst()
	if !got.ServerKeepAlive || got.KeepAlive != 15*time.Second {
		t.Errorf("ServerKeepAlive %v, KeepAlive %v; want true, 15s", got.ServerKeepAlive, got.KeepAlive)
	}
	if got.TopicAliasMaximum != 5 {
		t.Errorf("TopicAliasMaximum %d, want 5", got.TopicAliasMaximum)
	}
	if !got.WildcardSubscriptionAvailable || !got.SharedSubscriptionAvailable || !got.SubscriptionIdentifiersAvailable {
		t.Errorf("mosquitto supports wildcards, shared subscriptions and ids: %+v", got)
	}
	if got.SessionExpiry != time.Hour {
		t.Errorf("SessionExpiry %v, want 1h", got.SessionExpiry)
	}

	c = newClient(t, url, eventloop.Options{ProtocolVersion: 4, KeepAlive: time.Minute})
	got = c.expectConnectedFirst()
	if got.ProtocolVersion != 4 || got.ServerKeepAlive || got.TopicAliasMaximum != 0 || !got.WildcardSubscriptionAvailable {
		t.Errorf("3.1.1 CONNACK reported as %+v", got)
	}
}

// TestConnackRefusalServerReference: a refusal that names another server
// (0x9C, use another server) carries it in the *ReasonCodeError.
func TestConnackRefusalServerReference(t *testing.T) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	if err := peer.SendConnack(false, 0x9C, &packets.Properties{ServerReference: "mqtt://elsewhere:1883", ReasonString: "moved"}); err != nil {
		t.Fatal(err)
	}
	err = c.end()
	var rerr *eventloop.ReasonCodeError
	if !errors.As(err, &rerr) || rerr.Code != 0x9C || rerr.ServerReference != "mqtt://elsewhere:1883" || rerr.ReasonString != "moved" {
		t.Fatalf("run ended with %v (%+v), want CONNACK 0x9C naming mqtt://elsewhere:1883", err, rerr)
	}
}

// expectConnectedFirst returns the first notification, which must be
// Connected.
func (c *client) expectConnectedFirst() eventloop.Connected {
	c.t.Helper()
	n := c.next()
	conn, ok := n.(eventloop.Connected)
	if !ok {
		c.t.Fatalf("first notification %#v, want Connected", n)
	}
	return conn
}

// mosquittoURL starts mosquitto with opts (failing under CI when it is
// missing) and returns its URL, or "" when it is missing outside CI.
func mosquittoURL(t *testing.T, opts mosquitto.Options) string {
	t.Helper()
	if !mosquittoInstalled() {
		startMosquitto(t) // fails under CI
		return ""
	}
	return mosquitto.Start(t, opts).URL()
}
