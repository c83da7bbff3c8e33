package eventloop_test

import (
	"errors"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/state"
)

// storeOpened is one New with a Store.
type storeOpened struct {
	servers []string
	client  string
	name    string
}

// openStore creates a loop on st (without running it); with keep, it
// queues a publish and commits, as a run would.
func openStore(t *testing.T, st state.Store, o storeOpened, keep bool) (*eventloop.EventLoop, error) {
	t.Helper()
	client := o.client
	if client == "" {
		client = "client"
	}
	l, err := eventloop.New(eventloop.Options{Servers: o.servers, ClientID: client, SessionName: o.name, Store: st})
	if err != nil {
		return nil, err
	}
	if keep {
		l.State().Enqueue(state.Pending{Packet: &packets.Publish{Topic: "kept", QoS: 1}})
	}
	if err := l.State().Commit(); err != nil {
		t.Fatal(err)
	}
	return l, nil
}

// A store belongs to a session, not to the spelling of its first server:
// the same addresses however written, a failover list in another order or
// with a server added or removed continue it, with its messages; another
// client id, servers that share no address, or another SessionName do
// not.
func TestStoreIdentity(t *testing.T) {
	one := func(s ...string) []string { return s }
	for _, tc := range []struct {
		name        string
		first, then storeOpened
		same        bool
	}{
		{"trailing slash", storeOpened{servers: one("mqtt://127.0.0.1:1883/")}, storeOpened{servers: one("mqtt://127.0.0.1:1883")}, true},
		{"scheme alias tcp", storeOpened{servers: one("tcp://broker:1883")}, storeOpened{servers: one("mqtt://broker:1883")}, true},
		{"scheme alias ssl", storeOpened{servers: one("ssl://broker")}, storeOpened{servers: one("mqtts://broker:8883")}, true},
		{"scheme alias tls", storeOpened{servers: one("tls://broker:8883")}, storeOpened{servers: one("mqtts://broker")}, true},
		{"default port written", storeOpened{servers: one("mqtt://broker")}, storeOpened{servers: one("mqtt://broker:1883")}, true},
		{"websocket default port and path", storeOpened{servers: one("ws://broker")}, storeOpened{servers: one("ws://broker:80/mqtt")}, true},
		{"host case", storeOpened{servers: one("mqtt://Broker.Example.COM")}, storeOpened{servers: one("mqtt://broker.example.com")}, true},
		{"IPv6 spelling", storeOpened{servers: one("mqtt://[0:0::1]:1883")}, storeOpened{servers: one("mqtt://[::1]:1883")}, true},
		{"user information", storeOpened{servers: one("mqtt://user:secret@broker")}, storeOpened{servers: one("mqtt://broker")}, true},
		{"failover order", storeOpened{servers: one("mqtt://a", "mqtt://b")}, storeOpened{servers: one("mqtt://b", "mqtt://a")}, true},
		{"failover server added", storeOpened{servers: one("mqtt://a", "mqtt://b")}, storeOpened{servers: one("mqtt://c", "mqtt://b", "mqtt://a")}, true},
		{"failover server removed", storeOpened{servers: one("mqtt://a", "mqtt://b")}, storeOpened{servers: one("mqtt://b")}, true},
		{"another transport of a listed broker", storeOpened{servers: one("mqtt://a", "ws://a:8080/mqtt")}, storeOpened{servers: one("ws://a:8080")}, true},
		{"named session, new addresses", storeOpened{servers: one("mqtt://a"), name: "plant-7"}, storeOpened{servers: one("mqtts://lb.example:8883"), name: "plant-7"}, true},

		{"another broker", storeOpened{servers: one("mqtt://a")}, storeOpened{servers: one("mqtt://b")}, false},
		{"another port", storeOpened{servers: one("mqtt://a:1883")}, storeOpened{servers: one("mqtt://a:1884")}, false},
		{"tls and plain", storeOpened{servers: one("mqtt://a")}, storeOpened{servers: one("mqtts://a")}, false},
		{"another client id", storeOpened{servers: one("mqtt://a")}, storeOpened{servers: one("mqtt://a"), client: "other"}, false},
		{"another name", storeOpened{servers: one("mqtt://a"), name: "plant-7"}, storeOpened{servers: one("mqtt://a"), name: "plant-8"}, false},
		{"named, then by servers", storeOpened{servers: one("mqtt://a"), name: "plant-7"}, storeOpened{servers: one("mqtt://a")}, false},
		{"by servers, then named", storeOpened{servers: one("mqtt://a")}, storeOpened{servers: one("mqtt://a"), name: "plant-7"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := state.NewMemoryStore()
			if _, err := openStore(t, st, tc.first, true); err != nil {
				t.Fatal(err)
			}
			l, err := openStore(t, st, tc.then, false)
			if !tc.same {
				if !errors.Is(err, eventloop.ErrStoreMismatch) || !errors.Is(err, eventloop.ErrStore) {
					t.Fatalf("New: %v, want ErrStoreMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if q := l.State().QueuedRequests(); len(q) != 1 || q[0].Packet.(*packets.Publish).Topic != "kept" {
				t.Fatalf("the store's session lost its queued publish: %d queued", len(q))
			}
		})
	}
}

// The store records the servers it is used with: a list that drifts one
// server at a time keeps the session; the servers it left behind no longer
// name it. No password reaches the store.
func TestStoreFollowsServers(t *testing.T) {
	st := state.NewMemoryStore()
	steps := [][]string{
		{"mqtt://user:secret@a", "mqtt://b"},
		{"mqtt://b", "mqtt://c"},
		{"mqtt://c"},
	}
	var l *eventloop.EventLoop
	for i, servers := range steps {
		var err error
		if l, err = openStore(t, st, storeOpened{servers: servers}, i == 0); err != nil {
			t.Fatalf("step %d (%v): %v", i, servers, err)
		}
	}
	if id := l.State().Identity(); id.Server != "mqtt://c:1883" {
		t.Fatalf("the store names the servers %q, want mqtt://c:1883", id.Server)
	}
	if _, err := openStore(t, st, storeOpened{servers: []string{"mqtt://a"}}, false); !errors.Is(err, eventloop.ErrStoreMismatch) {
		t.Fatalf("a server the store no longer lists: %v, want ErrStoreMismatch", err)
	}
	first := storeOpened{servers: steps[0]}
	st2 := state.NewMemoryStore()
	l, err := openStore(t, st2, first, false)
	if err != nil {
		t.Fatal(err)
	}
	if id := l.State().Identity(); id.Server != "mqtt://a:1883 mqtt://b:1883" {
		t.Fatalf("identity %q", id.Server)
	}
}
