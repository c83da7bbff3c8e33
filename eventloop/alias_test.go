package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/mosquitto"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/mqtttest"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
)

// countingConn counts the bytes a client writes.
type countingConn struct {
	netio.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func countingDial(n *atomic.Int64, opts netio.DialOptions) func(context.Context, string) (netio.Conn, error) {
	return func(ctx context.Context, server string) (netio.Conn, error) {
		c, err := netio.Dial(ctx, server, opts)
		if err != nil {
			return nil, err
		}
		return countingConn{c, n}, nil
	}
}

// aliasTopics are ten topics of 64 bytes.
func aliasTopics(prefix string) []string {
	topics := make([]string, 10)
	for i := range topics {
		t := fmt.Sprintf("%s/%02d/", prefix, i)
		topics[i] = t + strings.Repeat("x", 64-len(t))
	}
	return topics
}

// publishBytes publishes 10,000 QoS 1 messages of 16 bytes round-robin to
// ten 64-byte topics and returns the bytes the client wrote for them.
func publishBytes(t *testing.T, url string, aliases uint16) int64 {
	t.Helper()
	var n atomic.Int64
	c := startClient(t, url, eventloop.Options{OutgoingTopicAliases: aliases, Dial: countingDial(&n, netio.DialOptions{})})
	before := n.Load() // CONNECT
	topics := aliasTopics(uniqueID("alias"))
	const total = 10000
	go func() {
		for i := 0; i < total; i++ {
			select {
			case c.reqs <- eventloop.Publish{Topic: topics[i%10], QoS: 1, Payload: []byte("0123456789abcdef")}:
				c.woke()
			case <-c.done:
				return
			}
		}
	}()
	for done := 0; done < total; {
		if p := expect[eventloop.Published](c); p.Err != nil {
			t.Fatalf("publish refused: %v", p.Err)
		}
		done++
	}
	return n.Load() - before
}

// TestTopicAliasBytes measures the bytes on the wire for 10,000 QoS 1
// publishes to ten 64-byte topics, without and with outgoing aliases, on
// the embedded broker and mosquitto (which accept them: every publish is
// acknowledged). The counts are exact: a PUBLISH is 87 bytes plain; with
// aliases the first to each topic is 90 (topic and a 3-byte alias
// property), the others 26 (the alias alone).
func TestTopicAliasBytes(t *testing.T) {
	urls := map[string]string{"mochi": mqtttest.StartT(t, mqtttest.Options{TopicAliasMaximum: 10, DisableCapture: true}).URL()}
	if u := mosquittoURL(t, mosquitto.Options{Extra: []string{"max_topic_alias 10"}}); u != "" {
		urls["mosquitto"] = u
	}
	for name, url := range urls {
		plain := publishBytes(t, url, 0)
		aliased := publishBytes(t, url, 10)
		t.Logf("%s: 10,000 publishes to 10 topics of 64 bytes: %d bytes plain, %d with aliases (%.1f%%)", name, plain, aliased, 100*float64(aliased)/float64(plain))
		if plain != 10000*87 || aliased != 10*90+9990*26 {
			t.Errorf("%s: %d and %d bytes, want %d and %d", name, plain, aliased, 10000*87, 10*90+9990*26)
		}
	}
}

// TestTopicAliasesLRUOnBroker: more topics than aliases, so aliases are
// reassigned least recently used first; the broker resolves every one
// right (a subscriber receives each message on its topic).
func TestTopicAliasesLRUOnBroker(t *testing.T) {
	urls := map[string]string{"mochi": mqtttest.StartT(t, mqtttest.Options{TopicAliasMaximum: 3}).URL()}
	if u := mosquittoURL(t, mosquitto.Options{Extra: []string{"max_topic_alias 3"}}); u != "" {
		urls["mosquitto"] = u
	}
	for name, url := range urls {
		t.Run(name, func(t *testing.T) {
			sub := startClient(t, url, eventloop.Options{})
			prefix := uniqueID("lru")
			sub.subscribe(eventloop.Filter{Topic: prefix + "/#", QoS: 1})
			pub := startClient(t, url, eventloop.Options{OutgoingTopicAliases: 10})
			topics := aliasTopics(prefix)[:5]
			order := []int{0, 1, 2, 0, 3, 1, 4, 4, 2, 0, 1, 3, 3, 0}
			for i, k := range order {
				pub.send(eventloop.Publish{Topic: topics[k], QoS: 1, Payload: []byte(fmt.Sprint(i))})
			}
			for i := range order {
				m := expect[eventloop.Message](sub)
				if want := fmt.Sprint(i); string(m.Payload) != want || m.Topic != topics[order[i]] {
					t.Fatalf("message %q on %s, want %s on %s", m.Payload, m.Topic, want, topics[order[i]])
				}
			}
		})
	}
}

// TestTopicAliasesNotCarriedOver: after a reconnection, the first publish
// to a topic that had an alias sends the topic again (aliases belong to a
// connection), and what the session holds never has an alias.
func TestTopicAliasesNotCarriedOver(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{TopicAliasMaximum: 5})
	id := uniqueID("carry")
	c := startClient(t, mb.URL(), eventloop.Options{ClientID: id, OutgoingTopicAliases: 5, SessionExpiry: 60e9,
		Reconnect: reconnect.Automatic, BackOff: quickBackOff()})
	topic := aliasTopics(uniqueID("carry"))[0]
	for i := 0; i < 3; i++ {
		c.send(eventloop.Publish{Topic: topic, QoS: 1})
		expect[eventloop.Published](c)
	}
	seq := mb.LastSeq()
	if err := mb.DisconnectClient(id, 0x98); err != nil {
		t.Fatal(err)
	}
	c.expectConnected()
	c.send(eventloop.Publish{Topic: topic, QoS: 1})
	expect[eventloop.Published](c)
	ctx := testContext(t)
	connect, err := mb.WaitPacketAfter(ctx, seq, id, mqtttest.FromClient, mochi.Connect)
	if err != nil {
		t.Fatal(err)
	}
	first, err := mb.WaitPacketAfter(ctx, connect.Seq, id, mqtttest.FromClient, mochi.Publish)
	if err != nil {
		t.Fatal(err)
	}
	if first.Packet.TopicName != topic || first.Packet.Properties.TopicAlias == 0 {
		t.Fatalf("first publish after reconnecting: topic %q alias %d, want the topic with a new alias", first.Packet.TopicName, first.Packet.Properties.TopicAlias)
	}
	var aliased int
	for _, p := range mb.Packets() {
		// Before the second CONNECT: seq may be short of the third
		// publish's PUBACK, which the capture records after sending it.
		if p.Seq < connect.Seq && p.Type == mochi.Publish && p.ClientID == id && p.Packet.TopicName == "" {
			aliased++
		}
	}
	if aliased != 2 {
		t.Fatalf("%d publishes with the alias alone before the cut, want 2", aliased)
	}
}

// TestTopicAliasesIncoming: the broker sends repeated topics as aliases
// (mochi does for clients that announce a Topic Alias Maximum); every
// message arrives with its topic.
func TestTopicAliasesIncoming(t *testing.T) {
	mb := mqtttest.StartT(t, mqtttest.Options{})
	id := uniqueID("in")
	sub := startClient(t, mb.URL(), eventloop.Options{ClientID: id, TopicAliasMaximum: 2})
	prefix := uniqueID("in")
	sub.subscribe(eventloop.Filter{Topic: prefix + "/#", QoS: 1})
	pub := startClient(t, mb.URL(), eventloop.Options{})
	topics := aliasTopics(prefix)[:3] // more topics than aliases
	for i := 0; i < 30; i++ {
		pub.send(eventloop.Publish{Topic: topics[i%3], QoS: byte(i % 2), Payload: []byte(fmt.Sprint(i))})
	}
	for i := 0; i < 30; i++ {
		m := expect[eventloop.Message](sub)
		if m.Topic != topics[i%3] || string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %q on %q, want %d on %s", m.Payload, m.Topic, i, topics[i%3])
		}
	}
	if n := countAliasOnly(mb, id); n == 0 {
		t.Fatal("the broker used no alias: the test checked nothing")
	}
}

func countAliasOnly(mb *mqtttest.Broker, id string) int {
	n := 0
	for _, p := range mb.Packets() {
		if p.Type == mochi.Publish && p.Direction == mqtttest.ToClient && p.ClientID == id && p.Packet.TopicName == "" {
			n++
		}
	}
	return n
}

// TestTopicAliasProtocolErrors: an alias never set (with an empty topic)
// is a protocol error (DISCONNECT 0x82); an alias of 0 or above the
// announced maximum is an invalid alias (DISCONNECT 0x94).
func TestTopicAliasProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   uint16
		topic string
		alias uint16
		code  byte
	}{
		{"unknown alias", 2, "", 1, 0x82},
		{"alias over the maximum", 2, "a/b", 3, 0x94},
		{"alias 0", 2, "a/b", 0, 0x94},
		{"alias without a maximum", 0, "a/b", 1, 0x94},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := rawbroker.Listen(t)
			c := newClient(t, srv.URL(), eventloop.Options{TopicAliasMaximum: tc.max})
			peer, err := srv.Accept(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			connect, err := peer.ExpectConnect()
			if err != nil {
				t.Fatal(err)
			}
			if got := connect.Properties.TopicAliasMaximum; (tc.max == 0) != (got == nil) || got != nil && *got != tc.max {
				t.Fatalf("CONNECT Topic Alias Maximum %v, want %d", got, tc.max)
			}
			if err := peer.SendConnack(false, 0, nil); err != nil {
				t.Fatal(err)
			}
			c.expectConnected()
			alias := tc.alias
			if err := peer.WritePacket(&packets.Publish{Topic: tc.topic, Payload: []byte("x"), Properties: &packets.Properties{TopicAlias: &alias}}); err != nil {
				t.Fatal(err)
			}
			cp, err := peer.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			d, ok := cp.Content.(*packets.Disconnect)
			if !ok || d.ReasonCode != tc.code {
				t.Fatalf("client answered %#v, want DISCONNECT %#x", cp.Content, tc.code)
			}
			if err := c.end(); !errors.Is(err, eventloop.ErrProtocol) {
				t.Fatalf("run ended with %v, want ErrProtocol", err)
			}
		})
	}
}
