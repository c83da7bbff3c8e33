package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/eclipse/paho.golang/packets"
)

// describe names a request for order checks: "pub:topic", "sub:f1,f2",
// "unsub:t1", with "resub:" for Resubscribe requests.
func describe(p Pending) string {
	switch pk := p.Packet.(type) {
	case *packets.Publish:
		return "pub:" + pk.Topic
	case *packets.Subscribe:
		var fs []string
		for _, o := range pk.Subscriptions {
			fs = append(fs, o.Topic)
		}
		if isResubscribe(p) {
			return "resub:" + strings.Join(fs, ",")
		}
		return "sub:" + strings.Join(fs, ",")
	case *packets.Unsubscribe:
		return "unsub:" + strings.Join(pk.Topics, ",")
	}
	return fmt.Sprintf("%T", p.Packet)
}

func queueOf(s *MqttState) []string {
	var out []string
	for _, p := range s.QueuedRequests() {
		out = append(out, describe(p))
	}
	return out
}

func TestSaveLoadRoundTrip(t *testing.T) {
	f := richSession(t)
	data := saved(t, f.s)
	got := mustLoad(t, data)
	sameSession(t, f.s, got)

	// Through the public accessors too.
	if got.Identity() != f.s.Identity() || got.Queued() != 4 || got.InFlight() != 4 || got.Outstanding() != 6 || got.AwaitingRelease() != 2 {
		t.Fatalf("loaded: identity %+v, queued %d, in flight %d, outstanding %d, awaiting release %d; want %+v, 4, 4, 6, 2",
			got.Identity(), got.Queued(), got.InFlight(), got.Outstanding(), got.AwaitingRelease(), f.s.Identity())
	}
	if want := []string{"pub:q0", "sub:qs/1,qs/2", "unsub:c", "pub:q2"}; !slices.Equal(queueOf(got), want) {
		t.Fatalf("loaded queue %v, want %v", queueOf(got), want)
	}
	for i, o := range got.InFlightPublishes() {
		w := f.inflight[i]
		if o.Publish.Topic != w.Topic || o.Publish.PacketID != w.PacketID || o.Tag != nil {
			t.Fatalf("loaded in flight[%d] = %s id %d tag %v, want %s id %d nil", i, o.Publish.Topic, o.Publish.PacketID, o.Tag, w.Topic, w.PacketID)
		}
	}
	if !reflect.DeepEqual(got.Subscriptions(), f.s.Subscriptions()) || got.SubscriptionIdentifier("b/#") != 7 || got.SubscriptionIdentifier("a/+") != 0 {
		t.Fatalf("loaded subscriptions %v (ids %d, %d)", got.Subscriptions(), got.SubscriptionIdentifier("b/#"), got.SubscriptionIdentifier("a/+"))
	}
	// Per connection or per loop: not saved.
	if got.Limits() != DefaultLimits || got.cfg != (Config{}) || got.Store() != nil {
		t.Fatalf("loaded limits %+v, config %+v, store %v; want defaults", got.Limits(), got.cfg, got.Store())
	}
	// Save is deterministic, and a loaded session saves to the same bytes.
	if again := saved(t, f.s); !bytes.Equal(again, data) {
		t.Fatalf("two saves of the same session differ")
	}
	if again := saved(t, got); !bytes.Equal(again, data) {
		t.Fatalf("the loaded session saves to different bytes")
	}
}

func TestSaveLoadEmptySession(t *testing.T) {
	s := New(Config{})
	got := mustLoad(t, saved(t, s))
	sameSession(t, s, got)
	if !got.Idle() || got.Identity() != (Identity{}) {
		t.Fatalf("loaded empty session is not empty")
	}
	// It works: ids start where they would have.
	got.Enqueue(Pending{Packet: pub("a", 1)})
	if id := sendID(t, got); id != 1 {
		t.Fatalf("first id %d, want 1", id)
	}
}

// A loaded session with the broker's session present replays what the
// original would, accepts the acks of its in-flight ids, answers PUBREL
// for its incoming QoS 2 ids, and sends its queue in order.
func TestLoadedSessionResumesWithSession(t *testing.T) {
	f := richSession(t)
	s := mustLoad(t, saved(t, f.s))
	s.SetConfig(Config{ManualAcks: true}) // as the event loop does
	rLive := f.s.Connected(connack(true, nil), true)
	r := s.Connected(connack(true, nil), true)
	if len(r.Replay) != 4 || len(r.Resubscribed) != 0 || r.Requeued != 2 {
		t.Fatalf("Connected: replay %d, resubscribed %v, requeued %d; want 4, none, 2", len(r.Replay), r.Resubscribed, r.Requeued)
	}
	for i := range r.Replay {
		if !reflect.DeepEqual(r.Replay[i], rLive.Replay[i]) {
			t.Fatalf("Replay[%d] = %v, the live session replays %v", i, r.Replay[i], rLive.Replay[i])
		}
	}
	wantReply(t, r.Replay[2], &packets.Pubrel{PacketID: f.inflight[2].PacketID})
	if p := r.Replay[0].(*packets.Publish); !p.Duplicate || p.PacketID != 65534 || !reflect.DeepEqual(p.Properties, fullProps(0)) {
		t.Fatalf("Replay[0] = %+v, want p0 with DUP, id 65534 and its properties", p)
	}
	if want := []string{"sub:s/#", "unsub:a/+", "pub:q0", "sub:qs/1,qs/2", "unsub:c", "pub:q2"}; !slices.Equal(queueOf(s), want) {
		t.Fatalf("queue %v, want %v", queueOf(s), want)
	}

	ids := make([]uint16, 4)
	for i, p := range f.inflight {
		ids[i] = p.PacketID
	}
	ev, _ := handle(t, s, &packets.Puback{PacketID: ids[0]})
	if d := ev.(PublishDone); d.Publish.Topic != "p0" || d.Tag != nil {
		t.Fatalf("PUBACK completed %+v, want p0", d)
	}
	_, reply := handle(t, s, &packets.Pubrec{PacketID: ids[1]})
	wantReply(t, reply, &packets.Pubrel{PacketID: ids[1]})
	ev, _ = handle(t, s, &packets.Pubcomp{PacketID: ids[2]})
	if d := ev.(PublishDone); d.Publish.Topic != "p2" {
		t.Fatalf("PUBCOMP completed %+v, want p2", d)
	}
	ev, _ = handle(t, s, &packets.Pubcomp{PacketID: ids[1]})
	if d := ev.(PublishDone); d.Publish.Topic != "p1" {
		t.Fatalf("PUBCOMP completed %+v, want p1", d)
	}
	ev, _ = handle(t, s, &packets.Puback{PacketID: ids[3]})
	if d := ev.(PublishDone); d.Publish.Topic != "p3" || !d.Publish.Retain || d.Publish.Payload != nil {
		t.Fatalf("PUBACK completed %+v, want p3 retained with no payload", d)
	}

	// Incoming: 20 had its PUBREC; 21 awaits a manual ack that the
	// process it was delivered to never gave, so the broker's resend is
	// delivered again (the live session does not deliver it twice).
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 20})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 20})
	dup := &packets.Publish{Topic: "in", QoS: 2, PacketID: 21, Duplicate: true}
	ev, reply = handle(t, s, dup)
	wantDelivered(t, ev, dup)
	wantReply(t, reply, nil)
	ev, _ = handle(t, f.s, dup)
	wantNoEvent(t, ev)
	ev, _ = handle(t, s, dup) // once only
	wantNoEvent(t, ev)
	if reply, err := s.Ack(21, 2, 0, 0); err != nil {
		t.Fatal(err)
	} else {
		wantReply(t, reply, &packets.Pubrec{PacketID: 21})
	}
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 21})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 21})
	if reply, err := s.Ack(22, 1, 0, 0); err != nil {
		t.Fatal(err)
	} else {
		wantReply(t, reply, &packets.Puback{PacketID: 22})
	}

	// The queue goes out in order with fresh ids; the subscriptions
	// follow the SUBACK / UNSUBACK.
	for s.Queued() > 0 {
		p, pkt := send(t, s)
		switch pk := pkt.(type) {
		case *packets.Subscribe:
			handle(t, s, &packets.Suback{PacketID: pk.PacketID, Reasons: make([]byte, len(pk.Subscriptions))})
		case *packets.Unsubscribe:
			handle(t, s, &packets.Unsuback{PacketID: pk.PacketID, Reasons: make([]byte, len(pk.Topics))})
		case *packets.Publish:
			if pk.QoS == 2 {
				handle(t, s, &packets.Pubrec{PacketID: pk.PacketID})
				handle(t, s, &packets.Pubcomp{PacketID: pk.PacketID})
			}
		}
		_ = p
	}
	if !s.Idle() || s.AwaitingRelease() != 0 {
		t.Fatalf("session not idle after every flow completed")
	}
	want := []string{"b/#", "qs/1", "qs/2", "s/#"}
	if got := slices.Sorted(mapsKeys(s.Subscriptions())); !slices.Equal(got, want) {
		t.Fatalf("subscriptions %v, want %v", got, want)
	}
	checkInvariants(t, s)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Without the broker's session, a loaded session requeues like the live
// one, and re-subscribes.
func TestLoadedSessionResumesWithoutSession(t *testing.T) {
	f := richSession(t)
	s := mustLoad(t, saved(t, f.s))
	rLive := f.s.Connected(connack(false, nil), true)
	r := s.Connected(connack(false, nil), true)
	if len(r.Completed) != 1 || r.Completed[0].Publish.Topic != "p2" || r.Completed[0].Tag != nil {
		t.Fatalf("Completed = %+v, want p2", r.Completed)
	}
	if r.Requeued != rLive.Requeued || r.Requeued != 5 || !slices.Equal(r.Resubscribed, rLive.Resubscribed) {
		t.Fatalf("Requeued %d, Resubscribed %v; live %d, %v", r.Requeued, r.Resubscribed, rLive.Requeued, rLive.Resubscribed)
	}
	want := []string{"resub:a/+", "resub:b/#,c", "pub:p0", "pub:p1", "sub:s/#", "unsub:a/+", "pub:p3", "pub:q0", "sub:qs/1,qs/2", "unsub:c", "pub:q2"}
	if got := queueOf(s); !slices.Equal(got, want) {
		t.Fatalf("queue %v, want %v", got, want)
	}
	if got := queueOf(f.s); !slices.Equal(got, want) {
		t.Fatalf("live queue %v, want %v", got, want)
	}
	if s.AwaitingRelease() != 0 {
		t.Fatalf("incoming ids kept without a session")
	}
}

// Messages that awaited a manual ack when the session was saved, loaded
// under automatic acks: the broker's resends are delivered and acked.
func TestLoadedManualAcksUnderAutomaticAcks(t *testing.T) {
	f := richSession(t)
	s := mustLoad(t, saved(t, f.s)) // zero Config: automatic acks
	s.Connected(connack(true, nil), true)
	p2 := &packets.Publish{Topic: "in", QoS: 2, PacketID: 21, Duplicate: true}
	ev, reply := handle(t, s, p2)
	wantDelivered(t, ev, p2)
	wantReply(t, reply, &packets.Pubrec{PacketID: 21})
	_, reply = handle(t, s, &packets.Pubrel{PacketID: 21})
	wantReply(t, reply, &packets.Pubcomp{PacketID: 21})
	p1 := &packets.Publish{Topic: "in", QoS: 1, PacketID: 22, Duplicate: true}
	ev, reply = handle(t, s, p1)
	wantDelivered(t, ev, p1)
	wantReply(t, reply, &packets.Puback{PacketID: 22})
	if s.unackedQoS1.Has(22) || s.AwaitingRelease() != 1 {
		t.Fatalf("ids still awaiting: QoS 1 %v, QoS 2 %d (want only 20)", s.unackedQoS1.Clone(), s.AwaitingRelease())
	}
	checkInvariants(t, s)
}

// A publish the event loop rewrote to use a topic alias is saved with its
// topic and without the alias.
func TestSaveStripsTopicAlias(t *testing.T) {
	s := New(Config{})
	p := pub("long/topic/name", 1)
	s.Enqueue(Pending{Packet: p})
	sendID(t, s)
	p.Topic = ""
	p.Properties = &packets.Properties{TopicAlias: ptr[uint16](3), ContentType: "x"}
	got := mustLoad(t, saved(t, s))
	lp := got.InFlightPublishes()[0].Publish
	if lp.Topic != "long/topic/name" || lp.Properties == nil || lp.Properties.TopicAlias != nil || lp.Properties.ContentType != "x" {
		t.Fatalf("loaded publish %+v / %+v, want its topic, no alias, its other properties", lp, lp.Properties)
	}
}

func TestLoadEveryTruncationFails(t *testing.T) {
	data := saved(t, richSession(t).s)
	for n := range len(data) {
		s, err := Load(bytes.NewReader(data[:n]))
		wantCorrupt(t, fmt.Sprintf("first %d of %d bytes", n, len(data)), err)
		if s != nil {
			t.Fatalf("truncated to %d bytes: a session was returned with the error", n)
		}
	}
	_, err := Load(bytes.NewReader(append(slices.Clone(data), 0)))
	wantCorrupt(t, "a byte appended", err)
}

func TestLoadEveryByteFlipFails(t *testing.T) {
	data := saved(t, richSession(t).s)
	for i := range data {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			bad := slices.Clone(data)
			bad[i] ^= x
			s, err := Load(bytes.NewReader(bad))
			wantCorrupt(t, fmt.Sprintf("byte %d ^ %#x", i, x), err)
			if s != nil || errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("byte %d ^ %#x: session %v, error %v", i, x, s, err)
			}
		}
	}
}

func TestLoadVersions(t *testing.T) {
	recs := recordsOf(New(Config{}))
	if _, err := Load(bytes.NewReader(fileOf(FormatVersion, recs...))); err != nil {
		t.Fatalf("current version: %v", err)
	}
	_, err := Load(bytes.NewReader(fileOf(FormatVersion+1, recs...)))
	if !errors.Is(err, ErrUnsupportedVersion) || errors.Is(err, ErrCorruptState) {
		t.Fatalf("newer version: error %v, want ErrUnsupportedVersion only", err)
	}
	wantCorrupt(t, "version 0", errOf(Load(bytes.NewReader(fileOf(0, recs...)))))
	bad := fileOf(FormatVersion, recs...)
	copy(bad, "MQLSTATF")
	wantCorrupt(t, "bad magic", errOf(Load(bytes.NewReader(bad))))
}

func errOf(_ *MqttState, err error) error { return err }

// Records that pass the checksum but do not make a session (a bug in a
// writer, or a crafted file) are refused as a whole.
func TestLoadRejectsInconsistentRecords(t *testing.T) {
	f := richSession(t)
	base := recordsOf(f.s)
	find := func(k Kind) int {
		for i, r := range base {
			if r.Kind == k {
				return i
			}
		}
		t.Fatalf("no %s record", k)
		return -1
	}
	with := func(edit func(rs []Record) []Record) []Record {
		rs := make([]Record, len(base))
		for i, r := range base {
			rs[i] = Record{r.Kind, slices.Clone(r.Key), slices.Clone(r.Value)}
		}
		return edit(rs)
	}
	inflight, subscribing, queued, incoming, subsc := find(KindInFlight), find(KindSubscribing), find(KindQueued), find(KindIncomingQoS2), find(KindSubscription)
	pubValue := func(stage Stage, seq uint64, qos byte) []byte {
		return appendInFlight(nil, &Outgoing{Publish: pub("x", qos), Stage: stage, seq: seq})
	}
	for _, tc := range []struct {
		name string
		recs []Record
	}{
		{"no records", nil},
		{"no identity", with(func(rs []Record) []Record { return rs[1:] })},
		{"no counters", with(func(rs []Record) []Record { return slices.Delete(rs, 1, 2) })},
		{"duplicate identity", with(func(rs []Record) []Record { return append(rs, rs[0]) })},
		{"duplicate record", with(func(rs []Record) []Record { return append(rs, rs[queued]) })},
		{"unknown kind", with(func(rs []Record) []Record { return append(rs, Record{Kind: 99, Key: []byte{1}}) })},
		{"kind 0", with(func(rs []Record) []Record { return append(rs, Record{Kind: 0, Key: []byte{1}}) })},
		{"unknown meta key", with(func(rs []Record) []Record { return append(rs, Record{Kind: KindMeta, Key: []byte("x")}) })},
		{"packet id 0", with(func(rs []Record) []Record { rs[inflight].Key = []byte{0, 0}; return rs })},
		{"short id key", with(func(rs []Record) []Record { rs[incoming].Key = []byte{1}; return rs })},
		{"id in flight twice", with(func(rs []Record) []Record { rs[subscribing].Key = rs[inflight].Key; return rs })},
		{"QoS 0 in flight", with(func(rs []Record) []Record { rs[inflight].Value = pubValue(AwaitingAck, 1, 0); return rs })},
		{"QoS 1 awaiting PUBCOMP", with(func(rs []Record) []Record { rs[inflight].Value = pubValue(AwaitingComplete, 1, 1); return rs })},
		{"unknown stage", with(func(rs []Record) []Record { rs[inflight].Value = pubValue(7, 1, 1); return rs })},
		{"sequence beyond the counter", with(func(rs []Record) []Record { rs[inflight].Value = pubValue(AwaitingAck, 1000, 1); return rs })},
		{"sequence 0", with(func(rs []Record) []Record { rs[inflight].Value = pubValue(AwaitingAck, 0, 1); return rs })},
		{"sequence twice", with(func(rs []Record) []Record {
			rs[inflight].Value = pubValue(AwaitingAck, 1, 1)
			rs[inflight+1].Value = pubValue(AwaitingAck, 1, 1)
			return rs
		})},
		{"queued type", with(func(rs []Record) []Record { rs[queued].Value[0] = 9; return rs })},
		{"queued flags", with(func(rs []Record) []Record { rs[queued].Value[1] = 2; return rs })},
		{"queue key", with(func(rs []Record) []Record { rs[queued].Key = rs[queued].Key[:7]; return rs })},
		{"queue position at the end of int64", with(func(rs []Record) []Record {
			rs[queued].Key = appendQueueKey(nil, 1<<63-1)
			return rs
		})},
		{"PUBREC flag", with(func(rs []Record) []Record { rs[incoming].Value = []byte{2}; return rs })},
		{"trailing byte", with(func(rs []Record) []Record { rs[incoming].Value = []byte{1, 0}; return rs })},
		{"empty value", with(func(rs []Record) []Record { rs[inflight].Value = nil; return rs })},
		{"subscription options", with(func(rs []Record) []Record { rs[subsc].Value[0] |= 0x40; return rs })},
		{"subscription id", with(func(rs []Record) []Record {
			rs[subsc].Value = binary.AppendUvarint(rs[subsc].Value[:1], maxSubscriptionID+1)
			return rs
		})},
		{"empty filter", with(func(rs []Record) []Record { rs[subsc].Key = nil; return rs })},
		{"publish flags", with(func(rs []Record) []Record {
			v := pubValue(AwaitingAck, 1, 1)
			v[2] |= 0x40 // stage, seq (1 byte), flags
			rs[inflight].Value = v
			return rs
		})},
		{"property mask", with(func(rs []Record) []Record {
			p := pub("x", 1)
			v := appendInFlight(nil, &Outgoing{Publish: p, seq: 1})
			v[len(v)-1] = 0x20 // the nil-properties byte
			rs[inflight].Value = v
			return rs
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(bytes.NewReader(fileOf(FormatVersion, tc.recs...)))
			wantCorrupt(t, tc.name, err)
			if s != nil {
				t.Fatalf("a session was returned with the error")
			}
		})
	}
}

// Lengths and counts the input cannot hold are refused before anything is
// allocated for them.
func TestLoadBoundedMemory(t *testing.T) {
	counters := New(Config{}).appendCounters(nil)
	ident := New(Config{}).appendIdentity(nil)
	meta := []Record{{KindMeta, []byte(identityKey), ident}, {KindMeta, []byte(countersKey), counters}}
	huge := binary.AppendUvarint(nil, 1<<62)
	// A queued publish whose topic claims 2^62 bytes.
	topic := append([]byte{queuedPublish, 0, 1}, huge...)
	// A queued UNSUBSCRIBE claiming 2^62 topics.
	topics := append([]byte{queuedUnsubscribe, 0, 0}, huge...)
	// A queued publish with properties claiming 2^62 user properties.
	users := append([]byte{queuedPublish, 0, 1, 1, 'x', 0, propPresent, 0, 0, 0}, huge...)
	for name, data := range map[string][]byte{
		"topic length": fileOf(1, append(meta, Record{KindQueued, appendQueueKey(nil, 0), topic})...),
		"topic count":  fileOf(1, append(meta, Record{KindQueued, appendQueueKey(nil, 0), topics})...),
		"user count":   fileOf(1, append(meta, Record{KindQueued, appendQueueKey(nil, 0), users})...),
		"record length": func() []byte {
			// A record whose key claims 2^62 bytes, framed by hand.
			b := fileOf(1, meta...)
			b = append(b[:len(b)-4], byte(KindQueued))
			b = append(b, huge...)
			return binary.BigEndian.AppendUint32(b, crcOf(b))
		}(),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Load(bytes.NewReader(data))
		runtime.ReadMemStats(&after)
		wantCorrupt(t, name, err)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Fatalf("%s: %d bytes allocated for a %d-byte input", name, n, len(data))
		}
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestSaveLoadIOErrors(t *testing.T) {
	s := richSession(t).s
	size := len(saved(t, s))
	for _, n := range []int{0, 10, size - 1} {
		if err := s.Save(&failingWriter{n: n}); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("Save to a writer failing after %d bytes: %v", n, err)
		}
	}
	_, err := Load(iotest.ErrReader(errors.New("read failed")))
	if err == nil || errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), "read failed") {
		t.Fatalf("Load from a failing reader: %v, want the read error", err)
	}
	// Load reads to the end; a reader giving one byte at a time works.
	if _, err := Load(iotest.OneByteReader(bytes.NewReader(saved(t, s)))); err != nil {
		t.Fatalf("Load one byte at a time: %v", err)
	}
}

// FuzzLoad: no input panics or allocates beyond its size; every error
// is ErrCorruptState or ErrUnsupportedVersion; a session that loads is
// consistent and saves and loads back the same. With the first byte odd,
// the rest is wrapped in a header and a valid checksum, so the fuzzer
// explores the record decoder rather than the checksum.
func FuzzLoad(f *testing.F) {
	for _, s := range []*MqttState{New(Config{}), richSession(f).s} {
		data := saved(f, s)
		f.Add(append([]byte{0}, data...))
		f.Add(append([]byte{1}, data[len(magic)+2:len(data)-4]...))
	}
	f.Add([]byte{0})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode, data := data[0], data[1:]
		if mode&1 != 0 {
			b := binary.BigEndian.AppendUint16([]byte(magic), FormatVersion)
			b = append(b, data...)
			data = binary.BigEndian.AppendUint32(b, crcOf(b))
		}
		s, err := Load(bytes.NewReader(data))
		if err != nil {
			if s != nil {
				t.Fatalf("Load returned a session with error %v", err)
			}
			if !errors.Is(err, ErrCorruptState) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("Load error %v wraps neither ErrCorruptState nor ErrUnsupportedVersion", err)
			}
			return
		}
		checkInvariants(t, s)
		again := mustLoad(t, saved(t, s))
		sameSession(t, s, again)
		// The session works: connect both ways and send what is queued.
		for _, present := range []bool{true, false} {
			s.Connected(connack(present, nil), true)
			for range 4 {
				if err := s.NextToSend().Err; err != nil && !errors.Is(err, ErrNoPacketID) && !errors.Is(err, ErrNotSupported) {
					t.Fatalf("NextToSend: %v", err)
				}
			}
			checkInvariants(t, s)
		}
	})
}
