// Package clients puts the MQTT clients the peer benchmark compares
// behind one small interface: mqttloop's event loop, the repository's
// reader-goroutine baseline (same codec and session state as the loop,
// classic design), eclipse/paho.mqtt.golang and eclipse/paho.golang's
// autopaho.
package clients

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Kind names a client.
type Kind string

// The clients.
const (
	Loop Kind = "mqttloop"
	// LoopSelect is mqttloop with default options: a subscriber waits in
	// a select over its requests channel and learns of arriving bytes
	// through SIGIO. Loop's subscribers set WakeAfterSend (as package
	// client does), so they wait in the runtime's poller.
	LoopSelect Kind = "mqttloop-select"
	Baseline   Kind = "baseline"
	Paho       Kind = "paho"
	AutoPaho   Kind = "autopaho"
)

// All is every kind, in report order.
var All = []Kind{Loop, LoopSelect, Baseline, Paho, AutoPaho}

// KeepAlive is the keepalive every client asks for.
const KeepAlive = 60 * time.Second

// Subscriber is a connected, subscribed client.
type Subscriber interface {
	// Close disconnects and waits until the client's work has stopped.
	Close()
}

// Subscribe connects a client of kind to url (mqtt://host:port) with
// client id id, subscribes to topic at qos and returns once the broker
// acknowledged the subscription. onMsg runs once per message received, on
// whatever goroutine the client delivers on; it must be quick.
func Subscribe(kind Kind, url, id, topic string, qos byte, onMsg func()) (Subscriber, error) {
	switch kind {
	case Loop:
		return loopSubscribe(url, id, topic, qos, true, onMsg)
	case LoopSelect:
		return loopSubscribe(url, id, topic, qos, false, onMsg)
	case Baseline:
		return baselineSubscribe(url, id, topic, qos, onMsg)
	case Paho:
		return pahoSubscribe(url, id, topic, qos, onMsg)
	case AutoPaho:
		return autoSubscribe(url, id, topic, qos, onMsg)
	}
	return nil, fmt.Errorf("unknown client %q", kind)
}

// Publish publishes n messages of payload on topic at qos, with at most
// inflight QoS 1 messages unacknowledged, and returns when all were
// acknowledged (QoS 1) or handed to the socket (QoS 0).
func Publish(kind Kind, url, id, topic string, payload []byte, qos byte, n, inflight int) error {
	switch kind {
	case Loop, LoopSelect:
		return loopPublish(url, id, topic, payload, qos, n, inflight)
	case Baseline:
		return baselinePublish(url, id, topic, payload, qos, n, inflight)
	case Paho:
		return pahoPublish(url, id, topic, payload, qos, n, inflight)
	case AutoPaho:
		return autoPublish(url, id, topic, payload, qos, n, inflight)
	}
	return fmt.Errorf("unknown client %q", kind)
}

// RoundTrips publishes n QoS 1 messages one after the other, each after
// the previous one's PUBACK, and returns each round trip's duration.
func RoundTrips(kind Kind, url, id, topic string, payload []byte, n int) ([]time.Duration, error) {
	switch kind {
	case Loop, LoopSelect:
		return loopRoundTrips(url, id, topic, payload, n)
	case Baseline:
		return baselineRoundTrips(url, id, topic, payload, n)
	case Paho:
		return pahoRoundTrips(url, id, topic, payload, n)
	case AutoPaho:
		return autoRoundTrips(url, id, topic, payload, n)
	}
	return nil, fmt.Errorf("unknown client %q", kind)
}

var idSeq atomic.Int64

// ID returns a client id unique in this process.
func ID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, idSeq.Add(1))
}
