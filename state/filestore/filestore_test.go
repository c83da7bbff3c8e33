package filestore

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/state"
)

var ident = state.Identity{Server: "mqtt://broker:1883", ClientID: "filestore-test"}

func open(t testing.TB, path string) *Store {
	t.Helper()
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return st
}

func in(p packets.Packet) *packets.ControlPacket { return &packets.ControlPacket{Content: p} }

func handle(t testing.TB, s *state.MqttState, p packets.Packet) (state.Event, packets.Packet) {
	t.Helper()
	ev, reply, err := s.HandleIncoming(in(p))
	if err != nil {
		t.Fatalf("HandleIncoming(%T): %v", p, err)
	}
	return ev, reply
}

func send(t testing.TB, s *state.MqttState) packets.Packet {
	t.Helper()
	n := s.NextToSend()
	if n.Packet == nil || n.Err != nil {
		t.Fatalf("NextToSend: %+v", n)
	}
	return n.Packet
}

// load rebuilds the session the store holds, detached from the store.
func load(t testing.TB, st *Store) *state.MqttState {
	t.Helper()
	got, err := state.LoadStore(st)
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	if err := got.AttachStore(nil); err != nil {
		t.Fatal(err)
	}
	return got
}

func commit(t testing.TB, s *state.MqttState) {
	t.Helper()
	if err := s.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func saved(t testing.TB, s *state.MqttState) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.Save(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// same checks that the store holds the live session: Save writes the
// same bytes for both (Save is canonical and covers all that is stored).
func same(t testing.TB, st *Store, live *state.MqttState) *state.MqttState {
	t.Helper()
	got := load(t, st)
	if !bytes.Equal(saved(t, got), saved(t, live)) {
		t.Fatalf("the store does not hold the live session:\nstore: queued %d in flight %d outstanding %d subs %v\nlive:  queued %d in flight %d outstanding %d subs %v",
			got.Queued(), got.InFlight(), got.Outstanding(), got.Subscriptions(), live.Queued(), live.InFlight(), live.Outstanding(), live.Subscriptions())
	}
	return got
}

// work drives a session through every kind of change, committing after
// each round.
func work(t testing.TB, s *state.MqttState, round int) {
	t.Helper()
	for i := range 20 {
		p := &packets.Publish{Topic: fmt.Sprintf("r%d/%d", round, i), QoS: byte(i % 3), Payload: []byte(strings.Repeat("x", i))}
		if i%4 == 0 {
			p.Properties = &packets.Properties{ContentType: "text/plain", User: []packets.User{{Key: "k", Value: "v"}}}
		}
		s.Enqueue(state.Pending{Packet: p})
	}
	s.Enqueue(state.Pending{Packet: &packets.Subscribe{Subscriptions: []packets.SubOptions{{Topic: fmt.Sprintf("f/%d/#", round), QoS: 1, NoLocal: true}}}})
	s.Enqueue(state.Pending{Packet: &packets.Unsubscribe{Topics: []string{fmt.Sprintf("f/%d/#", round-1)}}})
	commit(t, s)
	for range 15 {
		send(t, s)
	}
	commit(t, s)
	// Acknowledge half of what is in flight, advance some QoS 2.
	for i, o := range s.InFlightPublishes() {
		switch {
		case i%2 == 1:
		case o.Publish.QoS == 1:
			handle(t, s, &packets.Puback{PacketID: o.Publish.PacketID})
		case o.Stage == state.AwaitingAck:
			handle(t, s, &packets.Pubrec{PacketID: o.Publish.PacketID})
		default:
			handle(t, s, &packets.Pubcomp{PacketID: o.Publish.PacketID})
		}
	}
	// Incoming QoS 2 and manual acks.
	handle(t, s, &packets.Publish{Topic: "in", QoS: 2, PacketID: uint16(100 + round)})
	handle(t, s, &packets.Publish{Topic: "in", QoS: 1, PacketID: uint16(200 + round)})
	if round > 0 {
		// (Forgotten if the broker lost the session meanwhile.)
		if _, err := s.Ack(uint16(100+round-1), 2, 0, 0); err != nil && !errors.Is(err, state.ErrUnknownPacketID) {
			t.Fatal(err)
		}
		handle(t, s, &packets.Pubrel{PacketID: uint16(100 + round - 1)})
	}
	commit(t, s)
	for s.Queued() > 0 {
		if pkt := s.NextToSend().Packet; pkt == nil {
			break
		} else if sub, isSub := pkt.(*packets.Subscribe); isSub {
			handle(t, s, &packets.Suback{PacketID: sub.PacketID, Reasons: []byte{1}})
		} else if u, isUnsub := pkt.(*packets.Unsubscribe); isUnsub {
			handle(t, s, &packets.Unsuback{PacketID: u.PacketID, Reasons: []byte{0}})
		}
	}
	if round%3 == 2 {
		s.Connected(&packets.Connack{SessionPresent: round%2 == 0}, true)
	}
	commit(t, s)
}

func TestWriteThroughCloseReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.db")
	st := open(t, path)
	s := state.New(state.Config{ManualAcks: true})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatalf("AttachStore: %v", err)
	}
	for round := range 6 {
		work(t, s, round)
		same(t, st, s)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, path)
	defer st.Close()
	same(t, st, s)
	// The reopened session goes on writing through the same file.
	got, err := state.LoadStore(st)
	if err != nil || got.Identity() != ident {
		t.Fatalf("LoadStore: identity %+v, %v", got.Identity(), err)
	}
	got.SetConfig(state.Config{ManualAcks: true})
	for round := 6; round < 9; round++ {
		work(t, got, round)
		same(t, st, got)
	}
}

func TestEmptyStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	st := open(t, path)
	if s := load(t, st); !s.Idle() || s.Identity() != (state.Identity{}) {
		t.Fatalf("LoadStore of a new store: not an empty session")
	}
	st.Close()
	st = open(t, path)
	defer st.Close()
	if s := load(t, st); !s.Idle() || s.Identity() != (state.Identity{}) {
		t.Fatalf("LoadStore of a reopened empty store: not an empty session")
	}
}

func TestIdentityMismatch(t *testing.T) {
	st := open(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	s := state.New(state.Config{})
	s.SetIdentity(ident)
	s.Enqueue(state.Pending{Packet: &packets.Publish{Topic: "kept", QoS: 1}})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	other := state.New(state.Config{})
	other.SetIdentity(state.Identity{Server: ident.Server, ClientID: "someone-else"})
	err := other.AttachStore(st)
	if !errors.Is(err, state.ErrStoreMismatch) || !strings.Contains(err.Error(), "someone-else") {
		t.Fatalf("AttachStore of another client id: %v, want ErrStoreMismatch naming both", err)
	}
	same(t, st, s)
}

func TestNotAStore(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	wantErr := func(what, path string, sentinel error) {
		t.Helper()
		st, err := Open(path, Options{})
		if err == nil {
			st.Close()
		}
		if !errors.Is(err, sentinel) {
			t.Fatalf("Open of %s: %v, want %v", what, err, sentinel)
		}
		t.Logf("%s: %v", what, err)
	}
	wantErr("a garbage file", write("garbage", bytes.Repeat([]byte("not a database "), 1000)), state.ErrCorruptState)

	// The header of a newer format, or of newer records.
	valid := func() []byte {
		t.Helper()
		path := filepath.Join(dir, "valid")
		os.Remove(path)
		open(t, path).Close()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	withHeader := func(version, records uint16) []byte {
		data := valid()
		binary.BigEndian.PutUint16(data[8:], version)
		binary.BigEndian.PutUint16(data[10:], records)
		binary.BigEndian.PutUint32(data[headerSize-4:], crc32.Checksum(data[:headerSize-4], castagnoli))
		return data
	}
	wantErr("a newer file format", write("newer", withHeader(FormatVersion+1, state.FormatVersion)), state.ErrUnsupportedVersion)
	wantErr("newer records", write("newer-records", withHeader(FormatVersion, state.FormatVersion+1)), state.ErrUnsupportedVersion)
	wantErr("format version 1 in this format's header", write("v1-header", withHeader(1, state.FormatVersion)), state.ErrCorruptState)

	// A damaged record in an intact file: LoadStore refuses the session.
	damaged := filepath.Join(dir, "damaged.db")
	st := open(t, damaged)
	s := state.New(state.Config{})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	work(t, s, 0)
	if err := st.Apply(&state.Batch{Puts: []state.Record{{Kind: state.KindInFlight, Key: []byte{0, 1}, Value: []byte{9, 9, 9}}}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = open(t, damaged)
	defer st.Close()
	if got, err := state.LoadStore(st); got != nil || !errors.Is(err, state.ErrCorruptState) {
		t.Fatalf("LoadStore of a damaged record: %v, %v; want ErrCorruptState", got, err)
	}
}

// A store of format version 1 (a bbolt database) is refused as such, and
// left as it was.
func TestOldFormat(t *testing.T) {
	gz, err := os.ReadFile("../../testdata/store-v1.bbolt.gz")
	if err != nil {
		t.Fatal(err)
	}
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	old, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, Options{})
	if !errors.Is(err, state.ErrUnsupportedVersion) || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("Open of a version 1 store: %v, want ErrUnsupportedVersion naming version 1", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, old) {
		t.Fatalf("Open changed the version 1 file")
	}
}

// Files too short to be a store, the empty file included, are refused; a
// failed Open leaves the file closed and unlocked, so that the repaired
// file opens at once.
func TestShortFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	st := open(t, src)
	s := state.New(state.Config{})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	work(t, s, 0)
	st.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cut.db")
	for _, n := range []int{0, 1, headerSize - 1, headerSize, 4095, 4096, 4097, len(good) - 1} {
		if err := os.WriteFile(path, good[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open(path, Options{Timeout: 10 * time.Millisecond})
		if err == nil {
			st.Close()
		}
		if !errors.Is(err, state.ErrCorruptState) {
			t.Fatalf("Open of the store cut to %d bytes: %v, want ErrCorruptState", n, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, good[:n]) {
			t.Fatalf("Open of the store cut to %d bytes changed it", n)
		}
		// Repaired, it opens: nothing of the failed Open is left.
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		st = open(t, path)
		same(t, st, s)
		st.Close()
	}
}

// The log is compacted as it grows: the file stays within a bound of the
// session's size however long the session runs, and every reopening finds
// the session it held.
func TestCompaction(t *testing.T) {
	defer func(old int64) { compactMin = old }(compactMin)
	compactMin = 8 << 10
	path := filepath.Join(t.TempDir(), "s.db")
	st := open(t, path)
	s := state.New(state.Config{ManualAcks: true})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	var largest int64
	for round := range 60 {
		work(t, s, round)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
		if round%10 == 9 {
			st.Close()
			st = open(t, path)
			got := same(t, st, s)
			if err := got.AttachStore(st); err != nil {
				t.Fatal(err)
			}
			got.SetConfig(state.Config{ManualAcks: true})
			s = got
		}
	}
	live := int64(len(saved(t, s)))
	// The log holds at most 2 × live + compactMin before it is compacted,
	// plus a snapshot written after it, plus the header.
	bound := logStart + 3*(live+frameOverhead) + compactMin + 64<<10
	if largest > bound {
		t.Fatalf("the file grew to %d bytes for a session of %d (bound %d)", largest, live, bound)
	}
	t.Logf("60 rounds: largest file %d bytes, session %d bytes saved", largest, live)
	st.Close()
}

func TestLockedAndClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st := open(t, path)
	if _, err := Open(path, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	s := state.New(state.Config{})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s.Enqueue(state.Pending{Packet: &packets.Publish{Topic: "a", QoS: 1}})
	if err := s.Commit(); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("Commit after Close: %v, want ErrStoreClosed", err)
	}
	if _, err := state.LoadStore(st); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("LoadStore after Close: %v", err)
	}
	if err := state.New(state.Config{}).AttachStore(st); !errors.Is(err, state.ErrStoreClosed) {
		t.Fatalf("AttachStore after Close: %v", err)
	}
	// Closed, the file opens again at once.
	open(t, path).Close()
}

// Topic filters may be as long as MQTT allows.
func TestLongTopicFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st := open(t, path)
	s := state.New(state.Config{})
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("level/", 60000/6)
	s.Enqueue(state.Pending{Packet: &packets.Subscribe{Subscriptions: []packets.SubOptions{{Topic: long, QoS: 2}, {Topic: "short", QoS: 1}}}})
	sub := send(t, s).(*packets.Subscribe)
	handle(t, s, &packets.Suback{PacketID: sub.PacketID, Reasons: []byte{2, 1}})
	commit(t, s)
	st.Close()
	st = open(t, path)
	got := same(t, st, s)
	if o, ok := got.Subscriptions()[long]; !ok || o.QoS != 2 {
		t.Fatalf("long filter lost: %v", ok)
	}
	if err := got.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	got.Enqueue(state.Pending{Packet: &packets.Unsubscribe{Topics: []string{long}}})
	u := send(t, got).(*packets.Unsubscribe)
	handle(t, got, &packets.Unsuback{PacketID: u.PacketID, Reasons: []byte{0}})
	commit(t, got)
	same(t, st, got)
	st.Close()
}

// The child of TestKilledProcess: it publishes through a store, printing
// each commit, until it is killed.
func TestKilledProcessChild(t *testing.T) {
	path := os.Getenv("FILESTORE_CHILD")
	if path == "" {
		t.Skip("run by TestKilledProcess")
	}
	st, err := Open(path, Options{NoSync: os.Getenv("FILESTORE_NOSYNC") != ""})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	s := state.New(state.Config{MaxInflight: 10})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		s.Enqueue(state.Pending{Packet: &packets.Publish{Topic: "m/" + strconv.Itoa(i), QoS: byte(1 + i%2), Payload: []byte(strconv.Itoa(i))}})
		// Send while the window has room; the broker acks the oldest
		// in flight now and then.
		for {
			if s.NextToSend().Packet == nil {
				break
			}
		}
		if i%3 == 0 {
			if fl := s.InFlightPublishes(); len(fl) > 0 {
				o := fl[0]
				if o.Publish.QoS == 1 {
					s.HandleIncoming(in(&packets.Puback{PacketID: o.Publish.PacketID}))
				} else if o.Stage == state.AwaitingAck {
					s.HandleIncoming(in(&packets.Pubrec{PacketID: o.Publish.PacketID}))
				} else {
					s.HandleIncoming(in(&packets.Pubcomp{PacketID: o.Publish.PacketID}))
				}
			}
		}
		if err := s.Commit(); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(1)
		}
		fmt.Fprintf(out, "committed %d %d\n", i, s.Queued()+s.InFlight())
		out.Flush()
	}
}

// A process killed with SIGKILL mid-stream loses nothing it committed:
// every publish accepted before the last commit it reported is still
// queued or in flight (unless acked), exactly once, in order.
func TestKilledProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "killed.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcessChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "FILESTORE_CHILD="+path)
			if noSync {
				cmd.Env = append(cmd.Env, "FILESTORE_NOSYNC=1")
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			last, pending := -1, 0
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "error") {
					t.Fatalf("child: %s", line)
				}
				if n, _ := fmt.Sscanf(line, "committed %d %d", &last, &pending); n == 2 && last >= 300 {
					break
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if last < 300 {
				t.Fatalf("child stopped after commit %d", last)
			}

			st := open(t, path)
			defer st.Close()
			s, err := state.LoadStore(st)
			if err != nil || s.Identity() != ident {
				t.Fatalf("LoadStore after SIGKILL: %v", err)
			}
			// The child may have committed more after the line read.
			seen := map[int]bool{}
			var order []int
			for _, o := range s.InFlightPublishes() {
				order = append(order, topicNum(t, o.Publish.Topic))
			}
			for _, p := range s.QueuedRequests() {
				order = append(order, topicNum(t, p.Packet.(*packets.Publish).Topic))
			}
			for i, n := range order {
				if seen[n] {
					t.Fatalf("message %d twice in the session", n)
				}
				seen[n] = true
				// Acks complete the oldest: what is left is a
				// contiguous run, in order.
				if i > 0 && n != order[i-1]+1 {
					t.Fatalf("messages missing or out of order: %v", order)
				}
			}
			// Everything up to the reported commit is there unless it
			// completed: the session's messages are a contiguous run that
			// ends at or after it.
			if len(order) < pending || order[len(order)-1] < last {
				t.Fatalf("after commit %d with %d pending, the store holds %d messages ending at %v", last, pending, len(order), order[len(order)-1:])
			}
			t.Logf("killed after commit %d (at least); the store holds %d messages in flight or queued", last, len(order))
		})
	}
}

func topicNum(t *testing.T, topic string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(topic, "m/"))
	if err != nil {
		t.Fatalf("topic %q", topic)
	}
	return n
}

// BenchmarkApply100: one commit of 100 new 100-byte publishes, one of
// sending them (100 queued records out, 100 in-flight records in) and one
// of their acks (100 out): ns/commit is the cost of one commit
// of ~100-200 changes.
func BenchmarkApply100(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", noSync), func(b *testing.B) {
			st, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{NoSync: noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s := state.New(state.Config{})
			s.SetIdentity(ident)
			if err := s.AttachStore(st); err != nil {
				b.Fatal(err)
			}
			payload := bytes.Repeat([]byte{'p'}, 100)
			ids := make([]uint16, 100)
			commits := 0
			for b.Loop() {
				for range 100 {
					s.Enqueue(state.Pending{Packet: &packets.Publish{Topic: "bench/topic", QoS: 1, Payload: payload}})
				}
				commit(b, s)
				for i := range 100 {
					ids[i] = send(b, s).(*packets.Publish).PacketID
				}
				commit(b, s)
				for _, id := range ids {
					s.HandleIncoming(in(&packets.Puback{PacketID: id}))
				}
				commit(b, s)
				commits += 3
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(commits), "ns/commit")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(commits/3*100), "ns/msg")
		})
	}
}

// A commit whose root was not written (a crash between the two writes, or
// a root damaged since) is rolled forward from its frame; bytes after the
// log that are not a whole next frame (a torn write) are ignored, and the
// store goes on from there.
func TestRollForwardAndTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	st := open(t, path)
	s := state.New(state.Config{ManualAcks: true})
	s.SetIdentity(ident)
	if err := s.AttachStore(st); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		work(t, s, round)
	}
	st.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := activeRoot(data)
	if !ok || int64(len(data)) != r.end {
		t.Fatalf("active root %+v of a %d-byte file", r, len(data))
	}

	check := func(name string, bad []byte) {
		t.Helper()
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		st := open(t, path)
		got := same(t, st, s)
		// It goes on committing, and the result reopens.
		if err := got.AttachStore(st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got.SetConfig(state.Config{ManualAcks: true})
		work(t, got, 10)
		st.Close()
		st = open(t, path)
		same(t, st, got)
		st.Close()
	}
	// The newest root never written: the older root, then its frame.
	noRoot := bytes.Clone(data)
	clear(noRoot[slotOf(r.gen) : slotOf(r.gen)+rootSize])
	check("newest root missing", noRoot)
	// Torn tails: garbage, and the first part of a next frame.
	check("garbage tail", append(bytes.Clone(data), bytes.Repeat([]byte{0xa5}, 100)...))
	var fb frameBuilder
	fb.begin(r.gen + 1)
	fb.put(state.KindQueued, []byte("12345678"), []byte("never committed"))
	next, _ := fb.finish()
	check("torn next frame", append(bytes.Clone(data), next[:len(next)-1]...))
}
