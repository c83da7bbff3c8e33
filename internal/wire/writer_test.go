package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

func TestWriterBatchesIntoOneWrite(t *testing.T) {
	w := NewWriter(0)
	pkts := []packets.Packet{
		&packets.Publish{Topic: "a", QoS: 1, PacketID: 1, Payload: []byte("x")},
		&packets.Puback{PacketID: 9},
		&packets.Pingreq{},
		&packets.Subscribe{PacketID: 2, Subscriptions: []packets.SubOptions{{Topic: "b/#", QoS: 1}}},
	}
	var want []byte
	for _, p := range pkts {
		if err := w.Append(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, mustAppend(t, p)...)
	}
	if w.Buffered() != len(want) {
		t.Fatalf("Buffered = %d, want %d", w.Buffered(), len(want))
	}
	c := &memConn{}
	deadline := time.Unix(1_700_000_000, 0)
	if err := w.Flush(c, deadline); err != nil {
		t.Fatal(err)
	}
	if c.writes != 1 || !bytes.Equal(c.out.Bytes(), want) {
		t.Fatalf("%d writes of % x, want one of % x", c.writes, c.out.Bytes(), want)
	}
	if c.deadlineCalls != 1 || !c.writeDeadline.Equal(deadline) {
		t.Fatalf("write deadline %v set %d times", c.writeDeadline, c.deadlineCalls)
	}
	if w.Buffered() != 0 {
		t.Fatalf("Buffered = %d after Flush", w.Buffered())
	}
	// Nothing buffered: no write, no deadline.
	if err := w.Flush(c, deadline); err != nil || c.writes != 1 || c.deadlineCalls != 1 {
		t.Fatalf("empty Flush: %v, %d writes", err, c.writes)
	}
	// The whole output frames back into the same packets.
	out := c.out.Bytes()
	for i, p := range pkts {
		b := mustAppend(t, p)
		if !bytes.HasPrefix(out, b) {
			t.Fatalf("packet %d (%T) not where expected", i, p)
		}
		pkt, err := Decode(split(t, b))
		if err != nil || PacketType(pkt.Content) != PacketType(p) {
			t.Fatalf("packet %d (%T) reads back as %v, %v", i, p, pkt, err)
		}
		out = out[len(b):]
	}
}

func TestWriterMaxPacketSize(t *testing.T) {
	p := &packets.Publish{Topic: "a", Payload: make([]byte, 100)}
	size := len(mustAppend(t, p))
	w := NewWriter(size - 1)
	if err := w.Append(&packets.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(p); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("Append over the limit: %v", err)
	}
	if w.Buffered() != 2 {
		t.Fatalf("Buffered = %d after a refused Append", w.Buffered())
	}
	w.SetMaxPacketSize(size)
	if err := w.Append(p); err != nil {
		t.Fatal(err)
	}
	w.SetMaxPacketSize(0)
	if err := w.Append(&packets.Publish{Topic: "a", Payload: make([]byte, 10*size)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(&packets.Publish{Topic: "a", QoS: 3}); !errors.Is(err, ErrInvalidPacket) {
		t.Fatalf("Append QoS 3: %v", err)
	}
}

func TestWriterShrinksAfterLargePublish(t *testing.T) {
	var w Writer
	if err := w.Append(&packets.Publish{Topic: "big", Payload: make([]byte, 1<<20)}); err != nil {
		t.Fatal(err)
	}
	if cap(w.buf) < 1<<20 {
		t.Fatalf("cap %d", cap(w.buf))
	}
	if err := w.Flush(&memConn{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if cap(w.buf) > writerKeepSize {
		t.Fatalf("buffer of %d bytes kept after Flush", cap(w.buf))
	}
	// A normal-sized buffer is kept and reused.
	if err := w.Append(&packets.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	before := cap(w.buf)
	if err := w.Flush(&memConn{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if cap(w.buf) != before {
		t.Fatalf("small buffer not reused: cap %d, then %d", before, cap(w.buf))
	}
}

func TestWriterFlushErrors(t *testing.T) {
	boom := errors.New("boom")
	cases := map[string]struct {
		c    *memConn
		want error
	}{
		"write error":    {&memConn{writeErr: boom}, boom},
		"short write":    {&memConn{shortWrite: true}, io.ErrShortWrite},
		"deadline error": {&memConn{deadlineErr: boom}, boom},
	}
	for name, tc := range cases {
		var w Writer
		if err := w.Append(&packets.Pingreq{}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(tc.c, time.Time{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if w.Buffered() != 0 {
			t.Errorf("%s: %d bytes still buffered after a failed Flush", name, w.Buffered())
		}
	}
}

func TestWriterReset(t *testing.T) {
	var w Writer
	if err := w.Append(&packets.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	w.Reset()
	c := &memConn{}
	if err := w.Flush(c, time.Time{}); err != nil || c.writes != 0 {
		t.Fatalf("Flush after Reset: %v, %d writes", err, c.writes)
	}
}

func TestWriterSteadyStateDoesNotAllocate(t *testing.T) {
	w := NewWriter(0)
	c := &memConn{}
	pub := &packets.Publish{Topic: "a/b", QoS: 1, PacketID: 1, Payload: make([]byte, 64)}
	ack := &packets.Puback{PacketID: 1}
	allocs := testing.AllocsPerRun(100, func() {
		_ = w.Append(pub)
		_ = w.Append(ack)
		c.out.Reset()
		if err := w.Flush(c, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Append+Append+Flush", allocs)
	}
}

// BenchmarkWriterPublish measures buffering one 100-byte QoS 1 PUBLISH,
// with a Flush every 100 packets.
func BenchmarkWriterPublish(b *testing.B) {
	p := &packets.Publish{Topic: "sensors/room-1/temperature", QoS: 1, PacketID: 42, Payload: make([]byte, 100)}
	w := NewWriter(0)
	c := &memConn{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := w.Append(p); err != nil {
			b.Fatal(err)
		}
		if i++; i%100 == 0 {
			c.out.Reset()
			if err := w.Flush(c, time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// nowSink takes at most room bytes per call.
type nowSink struct {
	got  []byte
	room int
}

func (s *nowSink) WriteNow(p []byte) (int, error) {
	n := min(len(p), s.room)
	s.got = append(s.got, p[:n]...)
	return n, nil
}

func TestFlushNowKeepsTheRest(t *testing.T) {
	w := NewWriter(0)
	pub := &packets.Publish{Topic: "t", Payload: make([]byte, 100)}
	if err := w.Append(pub); err != nil {
		t.Fatal(err)
	}
	enc, err := AppendPacket(nil, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := w.Buffered()
	s := &nowSink{room: 40}
	for i := 0; ; i++ {
		done, err := w.FlushNow(s)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if i > 10 || w.Buffered() != want-len(s.got) {
			t.Fatalf("after %d calls: buffered %d, written %d of %d", i+1, w.Buffered(), len(s.got), want)
		}
	}
	if len(s.got) != want || w.Buffered() != 0 {
		t.Fatalf("wrote %d of %d, %d left", len(s.got), want, w.Buffered())
	}
	if !bytes.Equal(s.got, enc) {
		t.Fatal("the pieces do not make up the packet")
	}
}
