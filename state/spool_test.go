package state

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// spoolSession is a session with a MemoryStore and a spool of window w.
func spoolSession(t *testing.T, st Store, sp Spool) *MqttState {
	t.Helper()
	s, err := LoadStoreSpool(st, sp)
	if err != nil {
		t.Fatalf("LoadStoreSpool: %v", err)
	}
	s.SetIdentity(Identity{Server: "tcp://spool", ClientID: "spool"})
	s.SetSpool(sp)
	return s
}

func numbered(i int, qos byte) Pending {
	return Pending{Packet: &packets.Publish{Topic: "spool", QoS: qos, Payload: []byte(strconv.Itoa(i))}}
}

// drain sends everything sendable, acknowledging QoS 1 publishes, and
// commits after each round, as an event loop does; it returns the payloads
// in send order.
func drain(t *testing.T, s *MqttState, now time.Time, max int) []string {
	t.Helper()
	var got []string
	for round := 0; s.Queued() > 0 && len(got) < max; round++ {
		if round > 100000 {
			t.Fatalf("drain makes no progress: %d queued", s.Queued())
		}
		for len(got) < max {
			next := s.NextToSendAt(now)
			if next.Packet == nil {
				break
			}
			if next.Err != nil {
				t.Fatalf("NextToSendAt: %v", next.Err)
			}
			pub := next.Packet.(*packets.Publish)
			got = append(got, string(pub.Payload))
			if pub.QoS == 1 {
				handle(t, s, &packets.Puback{PacketID: pub.PacketID})
			}
		}
		if err := s.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if w := s.spool.cfg.Window; w > 0 && s.queue.Len() > w {
			t.Fatalf("%d requests in memory, window %d", s.queue.Len(), w)
		}
	}
	return got
}

func wantInOrder(t *testing.T, got []string, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d sent, want %d", len(got), n)
	}
	for i, p := range got {
		if p != strconv.Itoa(from+i) {
			t.Fatalf("sent #%d is %q, want %d (order or loss)", i, p, from+i)
		}
	}
}

func TestSpoolSpillsBeyondWindowAndDrainsInOrder(t *testing.T) {
	st := NewMemoryStore()
	s := spoolSession(t, st, Spool{Window: 8})
	now := time.Unix(1_700_000_000, 0)
	const n = 1000
	for i := range n {
		if err := s.EnqueueAt(numbered(i, byte(i%2)), now); err != nil {
			t.Fatalf("EnqueueAt %d: %v", i, err)
		}
		if i%50 == 49 {
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := len(s.QueuedRequests()); got != 8 {
		t.Fatalf("%d requests in memory, want the window (8)", got)
	}
	if sn, sb := s.Spooled(); sn != n-8 || sb <= 0 {
		t.Fatalf("Spooled = %d, %d bytes; want %d", sn, sb, n-8)
	}
	if s.Queued() != n {
		t.Fatalf("Queued = %d, want %d", s.Queued(), n)
	}
	// The store holds every queued request (and the session's meta).
	if recs := st.Records(); recs != n+2 {
		t.Fatalf("store holds %d records, want %d", recs, n+2)
	}
	// A producer that goes on while the queue drains: new requests go
	// behind the spooled ones.
	got := drain(t, s, now, 500)
	for i := n; i < n+100; i++ {
		if err := s.EnqueueAt(numbered(i, 1), now); err != nil {
			t.Fatal(err)
		}
	}
	got = append(got, drain(t, s, now, 1<<30)...)
	wantInOrder(t, got, 0, n+100)
	if sn, sb := s.Spooled(); sn != 0 || sb != 0 || !s.Idle() {
		t.Fatalf("after the drain: spooled %d (%d bytes), idle %v", sn, sb, s.Idle())
	}
	if recs := st.Records(); recs != 2 {
		t.Fatalf("store holds %d records after the drain, want only the meta records", recs)
	}
}

func TestSpoolResumesFromTheStoreMidBacklog(t *testing.T) {
	st := NewMemoryStore()
	sp := Spool{Window: 16}
	s := spoolSession(t, st, sp)
	now := time.Unix(1_700_000_000, 0)
	const n = 500
	for i := range n {
		if err := s.EnqueueAt(numbered(i, 1), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, now, 123)
	// "Killed": the session is rebuilt from the store alone.
	r, err := LoadStoreSpool(st, sp)
	if err != nil {
		t.Fatalf("LoadStoreSpool: %v", err)
	}
	if r.Queued() != n-123 {
		t.Fatalf("rebuilt session queues %d, want %d", r.Queued(), n-123)
	}
	if inMem := len(r.QueuedRequests()); inMem != sp.Window {
		t.Fatalf("rebuilt session holds %d requests in memory, want the window %d", inMem, sp.Window)
	}
	if sn, _ := r.Spooled(); sn != n-123-sp.Window {
		t.Fatalf("rebuilt session spools %d", sn)
	}
	// It keeps taking requests behind the backlog.
	for i := n; i < n+10; i++ {
		if err := r.EnqueueAt(numbered(i, 1), now); err != nil {
			t.Fatal(err)
		}
	}
	got = append(got, drain(t, r, now, 1<<30)...)
	wantInOrder(t, got, 0, n+10)

	// Save includes what is spooled.
	s2 := spoolSession(t, NewMemoryStore(), Spool{Window: 2})
	for i := range 10 {
		if err := s2.EnqueueAt(numbered(i, 0), now); err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if err := s2.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if err := s2.Save(&buf); err != nil {
		t.Fatal(err)
	}
	l, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, p := range l.QueuedRequests() {
		payloads = append(payloads, string(p.Packet.(*packets.Publish).Payload))
	}
	wantInOrder(t, payloads, 0, 10)
}

func TestSpoolByteBudget(t *testing.T) {
	st := NewMemoryStore()
	s := spoolSession(t, st, Spool{Window: 2, Bytes: 200})
	now := time.Unix(1_700_000_000, 0)
	accepted := 0
	var full error
	for i := range 100 {
		if err := s.EnqueueAt(numbered(i, 1), now); err != nil {
			full = err
			break
		}
		accepted++
	}
	if !errors.Is(full, ErrSpoolFull) {
		t.Fatalf("no ErrSpoolFull after %d requests: %v", accepted, full)
	}
	sn, sb := s.Spooled()
	if sb > 200 || sn != accepted-2 || s.Queued() != accepted {
		t.Fatalf("spooled %d (%d bytes), queued %d, accepted %d", sn, sb, s.Queued(), accepted)
	}
	// Sending frees the budget.
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, now, 4)
	if err := s.EnqueueAt(numbered(accepted, 1), now); err != nil {
		t.Fatalf("after sending 4, still full: %v", err)
	}
	got = append(got, drain(t, s, now, 1<<30)...)
	wantInOrder(t, got, 0, accepted+1)
}

func TestQueuedPublishExpiry(t *testing.T) {
	st := NewMemoryStore()
	s := spoolSession(t, st, Spool{Window: 1})
	t0 := time.Unix(1_700_000_000, 0)
	exp := func(secs uint32, i int) Pending {
		p := numbered(i, 1)
		p.Packet.(*packets.Publish).Properties = &packets.Properties{MessageExpiry: &secs}
		return p
	}
	for i, secs := range []uint32{10, 3, 100} {
		if err := s.EnqueueAt(exp(secs, i), t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	// The two spooled ones keep their deadline in the store.
	r, err := LoadStoreSpool(st, Spool{Window: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.SetIdentity(s.Identity())
	now := t0.Add(4500 * time.Millisecond)
	next := r.NextToSendAt(now)
	if next.Err != nil || *next.Packet.(*packets.Publish).Properties.MessageExpiry != 6 {
		t.Fatalf("first publish: err %v, expiry %v; want sent with 6 s left (10 - 4.5, rounded up)", next.Err, next.Packet.(*packets.Publish).Properties.MessageExpiry)
	}
	if err := r.Commit(); err != nil { // brings the spooled ones back
		t.Fatal(err)
	}
	next = r.NextToSendAt(now)
	if !errors.Is(next.Err, ErrExpired) || string(next.Packet.(*packets.Publish).Payload) != "1" {
		t.Fatalf("second publish (3 s, 4.5 s later): %+v, want ErrExpired", next)
	}
	if err := r.Commit(); err != nil {
		t.Fatal(err)
	}
	next = r.NextToSendAt(now)
	if next.Err != nil || *next.Packet.(*packets.Publish).Properties.MessageExpiry != 96 {
		t.Fatalf("third publish: %+v, want sent with 96 s left", next)
	}
	// Without a time (NextToSend), no policy applies.
	s2 := New(Config{})
	if err := s2.EnqueueAt(exp(1, 7), t0); err != nil {
		t.Fatal(err)
	}
	if next := s2.NextToSend(); next.Err != nil {
		t.Fatalf("NextToSend applied the expiry: %v", next.Err)
	}
}

func TestSpoolOrderWithRequeuedFront(t *testing.T) {
	// Requests put back at the front (a lost connection) go before the
	// spooled ones.
	st := NewMemoryStore()
	s := spoolSession(t, st, Spool{Window: 4})
	now := time.Unix(1_700_000_000, 0)
	for i := range 20 {
		if err := s.EnqueueAt(numbered(i, 1), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	var sent []string
	for range 3 {
		next := s.NextToSendAt(now)
		sent = append(sent, string(next.Packet.(*packets.Publish).Payload))
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	// Reconnect without a session: the three in flight are requeued.
	s.Connected(connack(false, nil), false)
	got := drain(t, s, now, 1<<30)
	wantInOrder(t, got, 0, 20)
	if fmt.Sprint(sent) != "[0 1 2]" {
		t.Fatalf("first sends %v", sent)
	}
}

func TestSpoolKeepsTags(t *testing.T) {
	s := spoolSession(t, NewMemoryStore(), Spool{Window: 2})
	now := time.Unix(1_700_000_000, 0)
	for i := range 10 {
		p := numbered(i, 0)
		if i%2 == 0 {
			p.Tag = i
		}
		if err := s.EnqueueAt(p, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; {
		next := s.NextToSendAt(now)
		if next.Packet == nil {
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want := any(nil)
		if i%2 == 0 {
			want = i
		}
		if next.Tag != want {
			t.Fatalf("request %d has Tag %v, want %v", i, next.Tag, want)
		}
		i++
	}
	if len(s.spool.tags) != 0 {
		t.Fatalf("%d tags left", len(s.spool.tags))
	}
}

func TestSpoolAttachAnotherStore(t *testing.T) {
	a := NewMemoryStore()
	s := spoolSession(t, a, Spool{Window: 3})
	now := time.Unix(1_700_000_000, 0)
	for i := range 20 {
		if err := s.EnqueueAt(numbered(i, 0), now); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Pending and committed spooled records both move to the new store.
	b := NewMemoryStore()
	if err := s.AttachStore(b); err != nil {
		t.Fatalf("AttachStore: %v", err)
	}
	if err := s.AttachStore(nil); err == nil {
		t.Fatalf("detaching a store that holds spooled requests succeeded")
	}
	r, err := LoadStoreSpool(b, Spool{Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	wantInOrder(t, drain(t, r, now, 1<<30), 0, 20)
}
