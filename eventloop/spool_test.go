package eventloop_test

import (
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/faultproxy"
	"github.com/mqttloop/mqttloop/reconnect"
	"github.com/mqttloop/mqttloop/state/filestore"
)

// spoolOptions are the options of a publisher that spools to path beyond
// a window of 8 requests in memory, reconnecting through url.
func spoolOptions(t *testing.T, b brokerCase, url, clientID, path string, budget int64) eventloop.Options {
	t.Helper()
	return spoolOptionsWith(t, b, url, clientID, path, budget, filestore.Options{NoSync: true})
}

func spoolOptionsWith(t *testing.T, b brokerCase, url, clientID, path string, budget int64, fo filestore.Options) eventloop.Options {
	t.Helper()
	store, err := filestore.Open(path, fo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return b.portable(eventloop.Options{
		Servers:       []string{url},
		ClientID:      clientID,
		SessionExpiry: time.Hour,
		Reconnect:     reconnect.Automatic,
		BackOff:       &backoff.ConstantBackOff{Interval: 20 * time.Millisecond},
		MaxQueued:     8,
		MaxInflight:   10,
		Store:         store,
		SpoolBytes:    budget,
	})
}

// receiveInOrder reads n messages of sub and fails unless their payloads
// are from, from+1, ... in that order (QoS 1 from one publisher over one
// connection: the broker keeps the order and sends each once). It reads
// pub's notifications meanwhile (nil: none), so that neither stalls, and
// returns how many Published it saw; a failed publish fails the test, and
// so does one whose Tag is not its number (with wantTags, or any Tag).
func receiveInOrder(t *testing.T, sub, pub *client, from, n int, wantTags bool) (published int) {
	t.Helper()
	var pubOut chan eventloop.Notification
	if pub != nil {
		pubOut = pub.out
	}
	for i := from; i < from+n; {
		select {
		case note, ok := <-sub.out:
			if !ok {
				t.Fatalf("subscriber's run ended: %v", sub.err)
			}
			m, isMsg := note.(eventloop.Message)
			if !isMsg {
				continue
			}
			if string(m.Payload) != strconv.Itoa(i) {
				t.Fatalf("message %d is %q: lost or out of order", i, m.Payload)
			}
			i++
		case note, ok := <-pubOut:
			if !ok {
				t.Fatalf("publisher's run ended: %v", pub.err)
			}
			switch v := note.(type) {
			case eventloop.Published:
				if v.Err != nil {
					t.Fatalf("publish failed: %v", v.Err)
				}
				// The Tag comes back, spooled or not.
				if tag, _ := v.Request.Tag.(int); (wantTags || v.Request.Tag != nil) && strconv.Itoa(tag) != string(v.Request.Payload) {
					t.Fatalf("Published for %q carries Tag %v", v.Request.Payload, v.Request.Tag)
				}
				published++
			case eventloop.RequestFailed:
				t.Fatalf("request failed: %v", v.Err)
			case eventloop.QueueFull:
				t.Fatalf("QueueFull from a loop with a spool (it never stops reading): %+v", v)
			}
		case <-time.After(testTimeout):
			t.Fatalf("message %d did not arrive within %v", i, testTimeout)
		}
	}
	return published
}

// TestSpoolOfflineBacklogDrainsInOrder: a publisher whose broker is
// unreachable keeps taking requests far beyond MaxQueued (they spill to
// its file store), and sends all of them, in order, once it connects.
func TestSpoolOfflineBacklogDrainsInOrder(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp"}, func(t *testing.T, b brokerCase) {
		const n = 3000
		topic := uniqueID("spool")
		sub := b.start(t, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		opts := spoolOptions(t, b, proxy.URL(), uniqueID("spool"), filepath.Join(t.TempDir(), "spool.db"), 1<<30)
		pub := newClient(t, proxy.URL(), opts)
		// Without the spool the loop stops reading at MaxQueued (8) and
		// these sends block: the run's timeout fails the test.
		for i := range n {
			pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i)), Tag: i})
		}
		if proxy.Stats().Active != 0 {
			t.Fatalf("the publisher got through while the proxy refused")
		}
		proxy.Refuse(false)
		published := receiveInOrder(t, sub, pub, 0, n, true)
		for ; published < n; published++ {
			p := expect[eventloop.Published](pub)
			if p.Err != nil || p.Request.Tag != any(mustAtoi(t, string(p.Request.Payload))) {
				t.Fatalf("Published %q: err %v, Tag %v", p.Request.Payload, p.Err, p.Request.Tag)
			}
		}
	})
}

// TestSpoolSurvivesRestart: the backlog taken while offline is in the
// store when the process stops; a new loop on the same store sends it, in
// order, then what it is given next.
func TestSpoolSurvivesRestart(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp"}, func(t *testing.T, b brokerCase) {
		const n = 1000
		topic := uniqueID("restart")
		sub := b.start(t, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		path := filepath.Join(t.TempDir(), "spool.db")
		clientID := uniqueID("restart")

		first := newClient(t, proxy.URL(), spoolOptions(t, b, proxy.URL(), clientID, path, 1<<30))
		for i := range n {
			first.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i))})
		}
		first.send(eventloop.Shutdown{})
		mustIs(t, first.end(), eventloop.ErrStopped)
		first.loop.State().Store().Close()

		proxy.Refuse(false)
		second := newClient(t, proxy.URL(), spoolOptions(t, b, proxy.URL(), clientID, path, 1<<30))
		second.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(n))})
		receiveInOrder(t, sub, second, 0, n+1, false)
	})
}

// TestSpoolBudgetFull: beyond the spool's byte budget a request is
// reported Dropped with ErrSpoolFull, the loop goes on reading, and every
// request is either sent or dropped with a notification.
func TestSpoolBudgetFull(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp"}, func(t *testing.T, b brokerCase) {
		const n = 200
		topic := uniqueID("full")
		sub := b.start(t, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		opts := spoolOptions(t, b, proxy.URL(), uniqueID("full"), filepath.Join(t.TempDir(), "spool.db"), 2000)
		pub := newClient(t, proxy.URL(), opts)
		for i := range n {
			pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i))})
		}
		dropped := map[string]bool{}
		// 200 records of at least 25 bytes do not fit in 2000: the first
		// drop comes while offline.
		d := expect[eventloop.Dropped](pub)
		mustIs(t, d.Reason, eventloop.ErrSpoolFull)
		dropped[string(d.Request.(eventloop.Publish).Payload)] = true
		proxy.Refuse(false)
		published := 0
		for published+len(dropped) < n {
			switch v := pub.next().(type) {
			case eventloop.Published:
				published++
			case eventloop.Dropped:
				mustIs(t, v.Reason, eventloop.ErrSpoolFull)
				dropped[string(v.Request.(eventloop.Publish).Payload)] = true
			case eventloop.RequestFailed:
				t.Fatalf("request failed: %v", v.Err)
			}
		}
		// The ones kept arrive in order: the first ones (memory, then the
		// spool until full).
		receiveInOrder(t, sub, nil, 0, published, false)
		for i := range published {
			if dropped[strconv.Itoa(i)] {
				t.Fatalf("message %d both dropped and sent", i)
			}
		}
		t.Logf("%d sent, %d dropped as the spool was full", published, len(dropped))
	})
}

// TestQueuedPublishExpires: a publish whose Message Expiry runs out while
// it waits offline (in memory or in the spool) is dropped with
// ErrMessageExpired; one still in time is sent with what remains.
func TestQueuedPublishExpires(t *testing.T) {
	forEachBrokerOver(t, []string{"tcp"}, func(t *testing.T, b brokerCase) {
		if b.v4() {
			t.Skip("Message Expiry is MQTT 5")
		}
		topic := uniqueID("expiry")
		sub := b.start(t, eventloop.Options{})
		sub.subscribe(eventloop.Filter{Topic: topic, QoS: 1})
		proxy := faultproxy.StartT(t, hostPort(b.url))
		proxy.Refuse(true)
		opts := spoolOptions(t, b, proxy.URL(), uniqueID("expiry"), filepath.Join(t.TempDir(), "spool.db"), 1<<20)
		opts.MaxQueued = 1 // the second and later wait in the spool
		pub := newClient(t, proxy.URL(), opts)
		start := time.Now()
		send := func(payload string, expiry time.Duration) {
			pub.send(eventloop.Publish{Topic: topic, QoS: 1, Payload: []byte(payload),
				Properties: &eventloop.Properties{MessageExpiry: expiry}})
		}
		send("short-memory", time.Second)
		send("short-spooled", time.Second)
		send("long", time.Hour)
		send("none", 0)
		// Offline until the short ones are due (the loop retries every
		// 20 ms: each Reconnecting is a look at the clock, not a sleep).
		for time.Since(start) <= 1100*time.Millisecond {
			expect[eventloop.Reconnecting](pub)
		}
		proxy.Refuse(false)
		for _, want := range []string{"short-memory", "short-spooled"} {
			d := expect[eventloop.Dropped](pub)
			mustIs(t, d.Reason, eventloop.ErrMessageExpired)
			if got := string(d.Request.(eventloop.Publish).Payload); got != want {
				t.Fatalf("dropped %q, want %q", got, want)
			}
		}
		m := expect[eventloop.Message](sub)
		if string(m.Payload) != "long" || m.Properties == nil {
			t.Fatalf("first message %q, properties %+v", m.Payload, m.Properties)
		}
		// Sent with what remained: at least 1.1 s less than an hour.
		if e := m.Properties.MessageExpiry; e >= time.Hour || e < time.Hour-time.Minute {
			t.Fatalf("long publish arrived with expiry %v, want what remained of an hour", e)
		}
		// (mochi gives a message without expiry its maximum, 24 h.)
		if m := expect[eventloop.Message](sub); string(m.Payload) != "none" {
			t.Fatalf("second message %q", m.Payload)
		}
	})
}

func TestSpoolOptionsChecked(t *testing.T) {
	_, err := eventloop.New(eventloop.Options{Servers: []string{"mqtt://127.0.0.1:1"}, SpoolBytes: 1 << 20})
	if !errors.Is(err, eventloop.ErrInvalidOptions) {
		t.Fatalf("SpoolBytes without a Store: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	i, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return i
}
