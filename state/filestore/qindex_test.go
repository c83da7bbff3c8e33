package filestore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/state"
)

func qkey(k int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(k)^(1<<63)) }

// scanAll returns the records of kind k from from on, as "key=value"
// strings.
func scanAll(t *testing.T, st state.Store, k state.Kind, from []byte) []string {
	t.Helper()
	var out []string
	if err := st.Scan(k, from, func(key, value []byte) bool {
		out = append(out, fmt.Sprintf("%x=%s", key, value))
		return true
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// TestQueuedRecordsOnDisk: queued records (whose values the store reads
// from the file) behave as the MemoryStore's, through random puts and
// deletes at the back, the front and the middle, compactions and reopens.
func TestQueuedRecordsOnDisk(t *testing.T) {
	defer func(old int64) { compactMin = old }(compactMin)
	compactMin = 16 << 10
	path := filepath.Join(t.TempDir(), "q.db")
	fs := openNoSync(t, path)
	defer func() { fs.Close() }()
	mem := state.NewMemoryStore()
	rng := rand.New(rand.NewSource(1))
	front, back := int64(0), int64(0)
	present := map[int64]bool{}
	for round := range 400 {
		var b state.Batch
		seen := map[int64]bool{}
		put := func(k int64) {
			if seen[k] {
				return
			}
			seen[k] = true
			present[k] = true
			v := bytes.Repeat([]byte{byte('a' + rng.Intn(26))}, rng.Intn(300))
			b.Puts = append(b.Puts, state.Record{Kind: state.KindQueued, Key: qkey(k), Value: v})
		}
		del := func(k int64) {
			if seen[k] {
				return
			}
			seen[k] = true
			delete(present, k)
			b.Deletes = append(b.Deletes, state.Record{Kind: state.KindQueued, Key: qkey(k)})
		}
		for range rng.Intn(40) {
			switch r := rng.Intn(10); {
			case r < 5:
				put(back)
				back++
			case r < 8 && front < back:
				del(front)
				front++
			case r == 8:
				front--
				put(front)
			default:
				if back > front {
					k := front + rng.Int63n(back-front)
					if rng.Intn(2) == 0 {
						del(k)
					} else {
						put(k) // overwrite (or revive)
					}
				}
			}
		}
		if rng.Intn(5) == 0 {
			b.Puts = append(b.Puts, state.Record{Kind: state.KindSubscription, Key: []byte(fmt.Sprint("f", round%7)), Value: []byte{1, 0}})
		}
		if err := fs.Apply(&b); err != nil {
			t.Fatalf("round %d: Apply: %v", round, err)
		}
		if err := mem.Apply(&b); err != nil {
			t.Fatal(err)
		}
		if round%37 == 0 {
			fs.Close()
			fs = openNoSync(t, path)
		}
		from := []byte(nil)
		if rng.Intn(2) == 0 && back > front {
			from = qkey(front + rng.Int63n(back-front+1))
		}
		got, want := scanAll(t, fs, state.KindQueued, from), scanAll(t, mem, state.KindQueued, from)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: file store scans %d records, memory store %d\nfile: %.300v\nmem:  %.300v", round, len(got), len(want), got, want)
		}
		if len(want) > 0 && from == nil && len(want) != len(present) {
			t.Fatalf("model off: %d present, %d scanned", len(present), len(want))
		}
	}
	if st, _ := fs.f.Stat(); st.Size() > 4<<20 {
		t.Fatalf("file grew to %d bytes: not compacted", st.Size())
	}
}

// TestSpoolThroughFileStore: a session spooling through the file store
// drains in order across a reopen, with the store's memory free of the
// spooled values.
func TestSpoolThroughFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	fs := openNoSync(t, path)
	sp := state.Spool{Window: 32}
	s, err := state.LoadStoreSpool(fs, sp)
	if err != nil {
		t.Fatal(err)
	}
	s.SetIdentity(state.Identity{Server: "tcp://x", ClientID: "spool"})
	s.SetSpool(sp)
	now := time.Unix(1_700_000_000, 0)
	const n = 20000
	for i := range n {
		if err := s.EnqueueAt(state.Pending{Packet: &packets.Publish{Topic: "t", QoS: 0, Payload: []byte(fmt.Sprint(i))}}, now); err != nil {
			t.Fatal(err)
		}
		if i%256 == 255 {
			commit(t, s)
		}
	}
	commit(t, s)
	if len(fs.recs[state.KindQueued]) != 0 || fs.queued.len() != n {
		t.Fatalf("store holds %d queued values in memory and indexes %d, want 0 and %d", len(fs.recs[state.KindQueued]), fs.queued.len(), n)
	}
	// A run per commit of 256 (the window's first 32 apart).
	if runs := len(fs.queued.runs); runs > n/maxRun+40 {
		t.Fatalf("%d runs index %d records: not kept together", runs, n)
	}
	next := 0
	sendSome := func(s *state.MqttState, k int) {
		for range k {
			ts := s.NextToSendAt(now)
			if ts.Packet == nil {
				commit(t, s)
				continue
			}
			if got := string(ts.Packet.(*packets.Publish).Payload); got != fmt.Sprint(next) {
				t.Fatalf("sent %s, want %d", got, next)
			}
			next++
		}
		commit(t, s)
	}
	sendSome(s, n/2)
	fs.Close()
	fs = openNoSync(t, path)
	defer fs.Close()
	s, err = state.LoadStoreSpool(fs, sp)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSpool(sp)
	for next < n {
		sendSome(s, 1000)
	}
	if !s.Idle() || fs.queued.len() != 0 {
		t.Fatalf("after the drain: idle %v, %d queued records in the store", s.Idle(), fs.queued.len())
	}
}

func openNoSync(t testing.TB, path string) *Store {
	t.Helper()
	st, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return st
}
