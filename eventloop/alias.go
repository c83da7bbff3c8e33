// Topic aliases (MQTT 5 §3.3.2.3.4), both ways, per connection: the
// broker's aliases in incoming publishes are resolved to topics, and
// outgoing publishes to repeated topics get aliases of the loop's own,
// assigned when a packet is written, never stored in the session (so a
// replay or a queued message never carries an alias from an earlier
// connection).

package eventloop

import (
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
)

// Reason codes of a DISCONNECT for a broker's bad alias.
const (
	reasonProtocolError     = 0x82
	reasonTopicAliasInvalid = 0x94
)

// inAliases resolves the broker's topic aliases on one connection.
type inAliases struct {
	max    uint16            // Options.TopicAliasMaximum: announced in CONNECT
	topics map[uint16]string // alias → topic
}

func (a *inAliases) reset(max uint16) {
	a.max = max
	clear(a.topics)
}

// resolve rewrites an incoming publish that uses an alias into one with
// its topic and no alias. It returns the reason code of the DISCONNECT
// to send and an error when the alias breaks the protocol.
func (a *inAliases) resolve(p *packets.Publish) (byte, error) {
	if p.Properties == nil || p.Properties.TopicAlias == nil {
		return 0, nil
	}
	alias := *p.Properties.TopicAlias
	if alias == 0 || alias > a.max {
		return reasonTopicAliasInvalid, fmt.Errorf("%w: PUBLISH with topic alias %d (this client allows 1-%d)", ErrProtocol, alias, a.max)
	}
	if p.Topic != "" {
		if a.topics == nil {
			a.topics = make(map[uint16]string)
		}
		a.topics[alias] = p.Topic
	} else {
		t, ok := a.topics[alias]
		if !ok {
			return reasonProtocolError, fmt.Errorf("%w: PUBLISH with an empty topic and topic alias %d, which no earlier PUBLISH on this connection set", ErrProtocol, alias)
		}
		p.Topic = t
	}
	p.Properties.TopicAlias = nil // the packet is ours: decoded for this call
	return 0, nil
}

// outAliases assigns the loop's topic aliases on one connection: up to
// max, the least recently used alias going to a new topic once all are
// taken.
type outAliases struct {
	max     int
	byTopic map[string]*aliasEntry
	head    *aliasEntry // most recently used
	tail    *aliasEntry // least recently used
	n       int
	// scratch: the packet written with an alias, reused (it is encoded at
	// once and not kept).
	pub   packets.Publish
	props packets.Properties
}

type aliasEntry struct {
	topic      string
	alias      uint16
	prev, next *aliasEntry
}

// minAliasedTopic: shorter topics are sent as they are (the alias
// property costs 3 bytes).
const minAliasedTopic = 4

func (a *outAliases) reset(max int) {
	a.max = max
	clear(a.byTopic)
	a.head, a.tail, a.n = nil, nil, 0
}

// withAlias returns the packet to write for p: p itself, or a copy that
// sets up or uses an alias, with the entry to commit once the copy was
// encoded (nil when nothing changes).
func (a *outAliases) withAlias(p *packets.Publish) (packets.Packet, *aliasEntry, bool) {
	if a.max == 0 || len(p.Topic) < minAliasedTopic {
		return p, nil, false
	}
	e, known := a.byTopic[p.Topic]
	if !known {
		if a.n < a.max {
			e = &aliasEntry{alias: uint16(a.n + 1)}
		} else {
			e = &aliasEntry{alias: a.tail.alias} // taken over once encoded
		}
		e.topic = p.Topic
	}
	a.pub = *p
	if p.Properties != nil {
		a.props = *p.Properties
	} else {
		a.props = packets.Properties{}
	}
	alias := e.alias
	a.props.TopicAlias = &alias
	a.pub.Properties = &a.props
	if known {
		a.pub.Topic = ""
	}
	return &a.pub, e, known
}

// commit records that e's packet was encoded: e becomes the most recently
// used, taking over the least recently used alias if it is new.
func (a *outAliases) commit(e *aliasEntry, known bool) {
	if a.byTopic == nil {
		a.byTopic = make(map[string]*aliasEntry)
	}
	if known {
		a.unlink(e)
	} else if a.n == a.max {
		old := a.tail
		a.unlink(old)
		delete(a.byTopic, old.topic)
	} else {
		a.n++
	}
	a.byTopic[e.topic] = e
	e.prev, e.next = nil, a.head
	if a.head != nil {
		a.head.prev = e
	}
	a.head = e
	if a.tail == nil {
		a.tail = e
	}
}

func (a *outAliases) unlink(e *aliasEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		a.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		a.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// appendPublish encodes a publish, with a topic alias when the broker
// allows them (Options.OutgoingTopicAliases). A publish that is too large
// with the alias property is written without it.
func (l *EventLoop) appendPublish(p *packets.Publish) (packets.Packet, error) {
	out, e, known := l.aliasOut.withAlias(p)
	if e == nil {
		return p, l.wr.Append(p)
	}
	err := l.wr.Append(out)
	if err == nil {
		l.aliasOut.commit(e, known)
		return out, nil
	}
	if !known && errors.Is(err, wire.ErrPacketTooLarge) {
		return p, l.wr.Append(p)
	}
	return out, err
}

// resetAliases starts a connection's aliases: incoming as announced in
// CONNECT, outgoing within the broker's maximum.
func (l *EventLoop) resetAliases(brokerMax uint16) {
	l.aliasIn.reset(l.opts.TopicAliasMaximum)
	l.aliasOut.reset(int(min(l.opts.OutgoingTopicAliases, brokerMax)))
}
