package eventloop

import (
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// send runs one publish through the aliases as write does, committing.
func (a *outAliases) send(topic string) (alias uint16, topicSent string) {
	p := &packets.Publish{Topic: topic}
	out, e, known := a.withAlias(p)
	if e != nil {
		a.commit(e, known)
	}
	op := out.(*packets.Publish)
	if op.Properties != nil && op.Properties.TopicAlias != nil {
		alias = *op.Properties.TopicAlias
	}
	if p.Properties != nil || p.Topic != topic {
		panic("the stored packet was changed")
	}
	return alias, op.Topic
}

func TestOutAliasesLRU(t *testing.T) {
	var a outAliases
	a.reset(2)
	steps := []struct {
		topic     string
		alias     uint16
		topicSent string
	}{
		{"aaaa", 1, "aaaa"}, // new: topic and alias
		{"aaaa", 1, ""},     // known: alias alone
		{"bbbb", 2, "bbbb"},
		{"aaaa", 1, ""},     // aaaa most recent, bbbb least
		{"cccc", 2, "cccc"}, // takes bbbb's alias
		{"bbbb", 1, "bbbb"}, // bbbb again: takes aaaa's (now least recent)
		{"cccc", 2, ""},
		{"ab", 0, "ab"}, // too short to alias
	}
	for i, s := range steps {
		alias, sent := a.send(s.topic)
		if alias != s.alias || sent != s.topicSent {
			t.Fatalf("step %d (%s): alias %d topic %q, want %d %q", i, s.topic, alias, sent, s.alias, s.topicSent)
		}
	}
	// An alias that was not committed (the packet was not written) is
	// not known afterwards.
	p := &packets.Publish{Topic: "dddd"}
	if _, e, _ := a.withAlias(p); e == nil {
		t.Fatal("no alias offered")
	}
	if alias, sent := a.send("dddd"); sent != "dddd" || alias == 0 {
		t.Fatalf("uncommitted alias used: %d %q", alias, sent)
	}
	// A new connection starts with none.
	a.reset(2)
	if _, sent := a.send("cccc"); sent != "cccc" {
		t.Fatal("an alias survived reset")
	}
	a.reset(0)
	if alias, _ := a.send("cccc"); alias != 0 {
		t.Fatal("alias with maximum 0")
	}
}

func TestInAliases(t *testing.T) {
	var a inAliases
	a.reset(3)
	alias := func(n uint16) *packets.Properties { return &packets.Properties{TopicAlias: &n} }
	p := &packets.Publish{Topic: "x/y", Properties: alias(2)}
	if code, err := a.resolve(p); err != nil || code != 0 || p.Properties.TopicAlias != nil {
		t.Fatalf("setting alias: %d %v", code, err)
	}
	p = &packets.Publish{Properties: alias(2)}
	if _, err := a.resolve(p); err != nil || p.Topic != "x/y" {
		t.Fatalf("using alias: %q %v", p.Topic, err)
	}
	for _, tc := range []struct {
		p    *packets.Publish
		code byte
	}{
		{&packets.Publish{Properties: alias(1)}, reasonProtocolError}, // never set
		{&packets.Publish{Topic: "t", Properties: alias(0)}, reasonTopicAliasInvalid},
		{&packets.Publish{Topic: "t", Properties: alias(4)}, reasonTopicAliasInvalid}, // over the maximum
	} {
		if code, err := a.resolve(tc.p); err == nil || code != tc.code {
			t.Errorf("%+v: code %#x, %v; want %#x", tc.p, code, err, tc.code)
		}
	}
	a.reset(3)
	if _, err := a.resolve(&packets.Publish{Properties: alias(2)}); err == nil {
		t.Error("an alias survived reset")
	}
}
