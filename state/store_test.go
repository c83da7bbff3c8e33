package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// recordingStore is a MemoryStore that keeps a copy of every batch and can
// be made to fail.
type recordingStore struct {
	*MemoryStore
	batches []Batch
	fail    error
}

func newRecordingStore() *recordingStore { return &recordingStore{MemoryStore: NewMemoryStore()} }

func (r *recordingStore) Apply(b *Batch) error {
	if r.fail != nil {
		return r.fail
	}
	c := Batch{Reset: b.Reset}
	for _, p := range b.Puts {
		c.Puts = append(c.Puts, Record{p.Kind, bytes.Clone(p.Key), bytes.Clone(p.Value)})
	}
	for _, d := range b.Deletes {
		c.Deletes = append(c.Deletes, Record{Kind: d.Kind, Key: bytes.Clone(d.Key)})
	}
	r.batches = append(r.batches, c)
	return r.MemoryStore.Apply(b)
}

// last returns the last batch and counts its records by kind: puts, then
// deletes.
func (r *recordingStore) last(t *testing.T) (Batch, map[Kind]int, map[Kind]int) {
	t.Helper()
	if len(r.batches) == 0 {
		t.Fatalf("no batch applied")
	}
	b := r.batches[len(r.batches)-1]
	puts, dels := map[Kind]int{}, map[Kind]int{}
	for _, p := range b.Puts {
		puts[p.Kind]++
	}
	for _, d := range b.Deletes {
		dels[d.Kind]++
	}
	return b, puts, dels
}

// loadStore rebuilds the session a store holds, detached from it.
func loadStore(t *testing.T, st Store) *MqttState {
	t.Helper()
	got, err := LoadStore(st)
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	if got.Store() != st {
		t.Fatalf("LoadStore did not attach the store")
	}
	if err := got.AttachStore(nil); err != nil {
		t.Fatal(err)
	}
	return got
}

// stored loads the session a store holds and checks it is the live one.
func stored(t *testing.T, st Store, live *MqttState) *MqttState {
	t.Helper()
	got := loadStore(t, st)
	if got.Identity() == (Identity{}) && live.Identity() != (Identity{}) {
		t.Fatalf("LoadStore: empty store")
	}
	sameSession(t, live, got)
	return got
}

func commit(t *testing.T, s *MqttState) {
	t.Helper()
	if err := s.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestAttachStoreWritesSnapshot(t *testing.T) {
	f := richSession(t)
	st := newRecordingStore()
	if err := f.s.AttachStore(st); err != nil {
		t.Fatalf("AttachStore: %v", err)
	}
	if len(st.batches) != 1 || !st.batches[0].Reset || len(st.batches[0].Puts) != len(recordsOf(f.s)) {
		t.Fatalf("AttachStore applied %d batches, want one full snapshot", len(st.batches))
	}
	if f.s.Store() != st {
		t.Fatalf("Store() = %v, want the attached store", f.s.Store())
	}
	stored(t, st, f.s)
	if id, ok, err := storedIdentity(st); !ok || err != nil || id != f.s.Identity() {
		t.Fatalf("store Identity() = %+v, %v, %v", id, ok, err)
	}
	// Nothing changed: Commit applies nothing.
	commit(t, f.s)
	if len(st.batches) != 1 {
		t.Fatalf("Commit with no change applied a batch")
	}
}

func TestAttachStoreIdentity(t *testing.T) {
	a := Identity{Server: "mqtt://a:1883", ClientID: "c1"}
	st := NewMemoryStore()
	s := New(Config{})
	s.SetIdentity(a)
	s.Enqueue(Pending{Packet: pub("x", 1)})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	for _, other := range []Identity{{}, {Server: a.Server, ClientID: "c2"}, {Server: "mqtt://b:1883", ClientID: a.ClientID}} {
		o := New(Config{})
		o.SetIdentity(other)
		err := o.AttachStore(st)
		if !errors.Is(err, ErrStoreMismatch) {
			t.Fatalf("attaching a session of %+v to a store of %+v: %v, want ErrStoreMismatch", other, a, err)
		}
		if o.Store() != nil {
			t.Fatalf("refused store attached anyway")
		}
	}
	stored(t, st, s) // untouched by the refusals

	// A session of the same identity replaces what the store held.
	o := New(Config{})
	o.SetIdentity(a)
	if err := o.AttachStore(st); err != nil {
		t.Fatalf("same identity: %v", err)
	}
	stored(t, st, o)

	// The identity follows SetIdentity at the next Commit.
	b := Identity{Server: "mqtt://b:1883", ClientID: "c1"}
	o.SetIdentity(b)
	commit(t, o)
	if id, _, _ := storedIdentity(st); id != b {
		t.Fatalf("store identity %+v after SetIdentity(%+v)", id, b)
	}

	// Detach: changes are no longer written.
	if err := o.AttachStore(nil); err != nil || o.Store() != nil {
		t.Fatalf("AttachStore(nil) = %v", err)
	}
	o.Enqueue(Pending{Packet: pub("y", 1)})
	commit(t, o)
	if got := loadStore(t, st); got.Queued() != 0 {
		t.Fatalf("a detached session still writes to the store")
	}
}

// One Apply per Commit, holding only what changed since the last one.
func TestCommitBatches(t *testing.T) {
	s := New(Config{})
	if err := s.Commit(); err != nil {
		t.Fatalf("Commit without a store: %v", err)
	}
	st := newRecordingStore()
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		s.Enqueue(Pending{Packet: pub(fmt.Sprint(i), byte(1+i%2))})
	}
	commit(t, s)
	_, puts, dels := st.last(t)
	if len(st.batches) != 2 || puts[KindQueued] != 100 || len(puts) != 1 || len(dels) != 0 {
		t.Fatalf("enqueue 100: %d batches, puts %v, deletes %v; want one batch of 100 queued", len(st.batches), puts, dels)
	}
	stored(t, st, s)

	for range 100 {
		send(t, s)
	}
	commit(t, s)
	_, puts, dels = st.last(t)
	// The counters changed, not the identity: one meta record.
	if len(st.batches) != 3 || puts[KindInFlight] != 100 || puts[KindMeta] != 1 || dels[KindQueued] != 100 {
		t.Fatalf("send 100: %d batches, puts %v, deletes %v", len(st.batches), puts, dels)
	}
	stored(t, st, s)

	for _, o := range s.InFlightPublishes() {
		if o.Publish.QoS == 1 {
			handle(t, s, &packets.Puback{PacketID: o.Publish.PacketID})
		} else {
			handle(t, s, &packets.Pubrec{PacketID: o.Publish.PacketID})
		}
	}
	commit(t, s)
	_, puts, dels = st.last(t)
	if puts[KindInFlight] != 50 || dels[KindInFlight] != 50 || puts[KindMeta] != 0 {
		t.Fatalf("50 acked, 50 PUBREC'd: puts %v, deletes %v", puts, dels)
	}
	stored(t, st, s)

	// Things that come and go between two commits cost nothing.
	n := len(st.batches)
	s.Enqueue(Pending{Packet: pub("transient", 1)})
	_, pkt := send(t, s)
	handle(t, s, &packets.Puback{PacketID: packetID(t, pkt)})
	s.Enqueue(Pending{Packet: pub("q0", 0)})
	send(t, s)
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 9})
	handle(t, s, &packets.Pubrel{PacketID: 9})
	commit(t, s)
	b, puts, dels := st.last(t)
	if len(st.batches) != n+1 || len(puts) != 1 || puts[KindMeta] != 1 || len(b.Deletes) != 0 {
		t.Fatalf("transient flows: puts %v, deletes %v; want only the counters", puts, dels)
	}
	stored(t, st, s)
}

// A failed Apply leaves the changes pending; the next Commit writes them.
func TestCommitRetriesAfterFailure(t *testing.T) {
	st := newRecordingStore()
	s := New(Config{ManualAcks: true})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	s.Enqueue(Pending{Packet: pub("a", 1)})
	send(t, s)
	commit(t, s)
	st.fail = errors.New("disk full")
	s.Enqueue(Pending{Packet: pub("b", 2)})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: 3})
	err := s.Commit()
	if err == nil || !errors.Is(err, st.fail) {
		t.Fatalf("Commit with a failing store: %v, want the store's error", err)
	}
	if got := loadStore(t, st); got.Queued() != 0 || got.AwaitingRelease() != 0 {
		t.Fatalf("a failed Apply changed the store")
	}
	send(t, s)
	st.fail = nil
	commit(t, s)
	stored(t, st, s)
}

// A process killed between two commits resumes from the last one.
func TestKilledBetweenCommits(t *testing.T) {
	st := NewMemoryStore()
	f := richSession(t)
	s := f.s
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	handle(t, s, &packets.Puback{PacketID: f.inflight[0].PacketID})
	s.Enqueue(Pending{Packet: pub("committed", 1)})
	commit(t, s)
	atCommit := mustLoad(t, saved(t, s))
	// Work that the process did not commit before it was killed.
	s.Enqueue(Pending{Packet: pub("lost", 1)})
	send(t, s)
	handle(t, s, &packets.Puback{PacketID: f.inflight[3].PacketID})

	got := stored(t, st, atCommit)
	// The restarted process attaches the loaded session and goes on.
	if err := got.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	got.Connected(connack(false, nil), true)
	send(t, got)
	commit(t, got)
	stored(t, st, got)
}

func TestMemoryStoreClosed(t *testing.T) {
	st := NewMemoryStore()
	s := New(Config{})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	if st.Records() != 2 || st.Applies() != 1 {
		t.Fatalf("store of an empty session: %d records, %d applies; want 2, 1", st.Records(), st.Applies())
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s.Enqueue(Pending{Packet: pub("a", 1)})
	if err := s.Commit(); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("Commit to a closed store: %v", err)
	}
	if _, err := LoadStore(st); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("LoadStore of a closed store: %v", err)
	}
	if err := New(Config{}).AttachStore(st); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("AttachStore of a closed store: %v", err)
	}
	var empty MemoryStore
	got, err := LoadStore(&empty)
	if err != nil || got.Identity() != (Identity{}) || !got.Idle() || got.Store() != &empty {
		t.Fatalf("LoadStore of an empty store = %v, %v; want an empty session attached", got, err)
	}
	// It writes through the store once it changes.
	got.SetIdentity(Identity{ClientID: "c"})
	commit(t, got)
	if empty.Records() != 2 {
		t.Fatalf("the session of an empty store wrote %d records, want the identity and counters", empty.Records())
	}
}

// The randomized sessions of random_test.go, written through a store: the
// session rebuilt from the store after any commit is the live one.
func TestRandomizedSessionsDurable(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			m := &randomModel{
				t:        t,
				rng:      rand.New(rand.NewSource(seed)),
				status:   map[int]reqStatus{},
				sentAt:   map[int]int{},
				incoming: map[uint16]bool{},
			}
			m.s = New(Config{MaxInflight: m.rng.Intn(6)})
			st := NewMemoryStore()
			if err := m.s.AttachStore(st); err != nil {
				t.Fatal(err)
			}
			for step := range 800 {
				switch r := m.rng.Intn(100); {
				case r < 30:
					m.enqueue()
				case r < 60:
					m.send()
				case r < 85:
					m.answer()
				case r < 90:
					m.incomingPublish()
				case r < 93:
					m.bogusAck()
				default:
					m.reconnect()
				}
				m.check(step)
				if m.rng.Intn(3) == 0 {
					commit(t, m.s)
					stored(t, st, m.s)
				}
			}
		})
	}
}

// Random operations beyond the model of random_test.go (manual acks,
// re-subscribe, dropping QoS 0, abandon, MarkSent, identity, out-of-order
// broker answers), with a commit now and then: the store always rebuilds
// the live session.
func TestRandomOperationsDurable(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			s := New(Config{MaxInflight: rng.Intn(8), ManualAcks: rng.Intn(2) == 0})
			st := NewMemoryStore()
			if err := s.AttachStore(st); err != nil {
				t.Fatal(err)
			}
			now := time.Unix(0, 0)
			var delivered []*packets.Publish
			for step := range 1500 {
				now = now.Add(time.Millisecond)
				switch r := rng.Intn(100); {
				case r < 20:
					var p packets.Packet
					switch rng.Intn(6) {
					case 0:
						p = sub(fmt.Sprintf("f/%d", rng.Intn(8)), fmt.Sprintf("g/%d", rng.Intn(8)))
						if rng.Intn(2) == 0 {
							p.(*packets.Subscribe).Properties = &packets.Properties{SubscriptionIdentifier: ptr(1 + rng.Intn(3))}
						}
					case 1:
						p = unsub(fmt.Sprintf("f/%d", rng.Intn(8)))
					default:
						pp := pub(fmt.Sprintf("t/%d", step), byte(rng.Intn(3)))
						if rng.Intn(3) == 0 {
							pp.Properties = fullProps(step)
						}
						p = pp
					}
					s.Enqueue(Pending{Packet: p, Tag: step})
				case r < 45:
					if n := s.NextToSend(); n.Packet != nil && n.Err == nil {
						pkt := n.Packet
						if rng.Intn(20) == 0 {
							s.Abandon(pkt)
						} else {
							s.MarkSent(pkt, now)
						}
					}
				case r < 70:
					answerRandomly(t, rng, s)
				case r < 82:
					id := uint16(1 + rng.Intn(10))
					if rng.Intn(3) == 0 {
						if sent, _ := s.incomingQoS2.Get(id); sent {
							handle(t, s, &packets.Pubrel{PacketID: id})
						}
						break
					}
					p := &packets.Publish{Topic: "in", QoS: byte(1 + rng.Intn(2)), PacketID: id}
					if s.incomingQoS2.Has(id) && p.QoS == 1 {
						break
					}
					if s.unackedQoS1.Has(id) && p.QoS == 2 {
						break
					}
					if ev, _ := handle(t, s, p); ev != nil {
						delivered = append(delivered, p)
					}
				case r < 88:
					if len(delivered) > 0 {
						i := rng.Intn(len(delivered))
						p := delivered[i]
						delivered = append(delivered[:i], delivered[i+1:]...)
						_, _ = s.Ack(p.PacketID, p.QoS, byte(rng.Intn(2)*0x80), 0)
					}
				case r < 93:
					r := s.Connected(connack(rng.Intn(2) == 0, nil), rng.Intn(4) != 0)
					if len(r.Replay) > 0 {
						for _, p := range r.Replay {
							s.MarkSent(p, now)
						}
					}
				case r < 95:
					s.DropQueuedQoS0()
				case r < 96:
					s.SetIdentity(Identity{Server: "s", ClientID: fmt.Sprint(rng.Intn(2))})
				}
				checkInvariants(t, s)
				if rng.Intn(4) == 0 {
					commit(t, s)
					stored(t, st, s)
				}
			}
			commit(t, s)
			stored(t, st, s)
		})
	}
}

// answerRandomly answers one random request awaiting the broker.
func answerRandomly(t *testing.T, rng *rand.Rand, s *MqttState) {
	t.Helper()
	pubs := s.InFlightPublishes()
	var reqs []uint16
	for id := range s.subscribing.Keys() {
		reqs = append(reqs, id)
	}
	for id := range s.unsubscribing.Keys() {
		reqs = append(reqs, id)
	}
	n := len(pubs) + len(reqs)
	if n == 0 {
		return
	}
	i := rng.Intn(n)
	if i >= len(pubs) {
		id := reqs[i-len(pubs)]
		if r, ok := s.subscribing.Get(id); ok {
			reasons := make([]byte, len(r.Packet.(*packets.Subscribe).Subscriptions))
			for j := range reasons {
				if rng.Intn(4) == 0 {
					reasons[j] = 0x80
				}
			}
			handle(t, s, &packets.Suback{PacketID: id, Reasons: reasons})
		} else {
			u, _ := s.unsubscribing.Get(id)
			handle(t, s, &packets.Unsuback{PacketID: id, Reasons: make([]byte, len(u.Packet.(*packets.Unsubscribe).Topics))})
		}
		return
	}
	o := pubs[i]
	id := o.Publish.PacketID
	switch {
	case o.Publish.QoS == 1:
		handle(t, s, &packets.Puback{PacketID: id})
	case o.Stage == AwaitingAck:
		handle(t, s, &packets.Pubrec{PacketID: id, ReasonCode: byte(rng.Intn(5)/4) * 0x80})
	default:
		handle(t, s, &packets.Pubcomp{PacketID: id})
	}
}

// Without a store the change tracking costs a nil check per transition;
// with a MemoryStore, one Apply per commit of 100 publishes.
func BenchmarkPublishFlow100(b *testing.B) {
	for _, withStore := range []bool{false, true} {
		b.Run(fmt.Sprintf("store=%v", withStore), func(b *testing.B) {
			s := New(Config{})
			if withStore {
				if err := s.AttachStore(NewMemoryStore()); err != nil {
					b.Fatal(err)
				}
			}
			payload := make([]byte, 100)
			ps := make([]packets.Packet, 100)
			b.ReportAllocs()
			for b.Loop() {
				for range 100 {
					s.Enqueue(Pending{Packet: &packets.Publish{Topic: "bench/t", QoS: 1, Payload: payload}})
				}
				for i := range 100 {
					ps[i] = s.NextToSend().Packet
				}
				if err := s.Commit(); err != nil {
					b.Fatal(err)
				}
				for i := range 100 {
					s.HandleIncoming(&packets.ControlPacket{Content: &packets.Puback{PacketID: ps[i].(*packets.Publish).PacketID}})
				}
				if err := s.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/msg")
		})
	}
}

// LoadStore attaches the rebuilt session without writing anything; its
// changes then go to the store as those of any attached session.
func TestLoadStoreAttaches(t *testing.T) {
	f := richSession(t)
	st := newRecordingStore()
	if err := f.s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadStore(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.batches) != 1 || got.Store() != st {
		t.Fatalf("LoadStore wrote %d batches (want none after the snapshot) or did not attach", len(st.batches)-1)
	}
	sameSession(t, f.s, got)
	got.Enqueue(Pending{Packet: pub("after", 1)})
	commit(t, got)
	b, puts, dels := st.last(t)
	if len(st.batches) != 2 || b.Reset || len(puts) != 1 || puts[KindQueued] != 1 || len(dels) != 0 {
		t.Fatalf("commit after LoadStore: reset %v, puts %v, deletes %v; want one queued record", b.Reset, puts, dels)
	}
	stored(t, st, got)
}

// Scan reads a kind from a key on, in key order, and stops when told.
func TestMemoryStoreScan(t *testing.T) {
	st := NewMemoryStore()
	s := New(Config{})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Enqueue(Pending{Packet: pub(fmt.Sprint(i), 1)})
	}
	s.pushFront([]Pending{{Packet: pub("front", 1)}})
	commit(t, s)
	var keys [][]byte
	from := appendQueueKey(nil, 3)
	if err := st.Scan(KindQueued, from, func(key, _ []byte) bool {
		keys = append(keys, bytes.Clone(key))
		return len(keys) < 4
	}); err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := range int64(4) {
		want = append(want, appendQueueKey(nil, 3+i))
	}
	if !slices.EqualFunc(keys, want, bytes.Equal) {
		t.Fatalf("Scan from position 3, four records: %x, want %x", keys, want)
	}
	var all []int64
	if err := st.Scan(KindQueued, nil, func(key, _ []byte) bool {
		all = append(all, int64(binary.BigEndian.Uint64(key)^(1<<63)))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(all) || len(all) != 11 || all[0] != -1 {
		t.Fatalf("Scan of every queued record: positions %v, want -1..9 in order", all)
	}
}

// A damaged record's error quotes a bounded part of its key: a damaged
// length can make a key as large as the file (a 1.8 GB key once took 24 GB
// to format).
func TestCorruptRecordErrorBounded(t *testing.T) {
	st := NewMemoryStore()
	s := New(Config{})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	huge := bytes.Repeat([]byte{0xfe}, 1<<20)
	if err := st.Apply(&Batch{Puts: []Record{{Kind: KindQueued, Key: huge, Value: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	_, err := LoadStore(st)
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("LoadStore of a record with a 1 MiB key: %v, want ErrCorruptState", err)
	}
	if n := len(err.Error()); n > 512 {
		t.Fatalf("the error is %d bytes long", n)
	}
	t.Log(err)
}
