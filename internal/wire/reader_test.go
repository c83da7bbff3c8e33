package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/vbi"
)

// stream concatenates encoded packets.
func stream(pkts ...[]byte) []byte { return bytes.Join(pkts, nil) }

// chunks cuts b into pieces of n bytes.
func chunks(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// drain reads c through rd until EOF and returns the packets.
func drain(t *testing.T, rd *Reader, c *memConn) []*Packet {
	t.Helper()
	var out []*Packet
	for i := 0; ; i++ {
		if i > 10_000_000 {
			t.Fatal("no progress")
		}
		_, err := rd.FillNow(c)
		for {
			cp, nerr := rd.Next()
			if nerr != nil {
				t.Fatalf("Next after %d packets: %v", len(out), nerr)
			}
			if cp == nil {
				break
			}
			out = append(out, cp)
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("FillNow: %v", err)
		}
	}
}

func sameContents(t *testing.T, got []*Packet, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i, b := range want {
		header, body := split(t, b)
		w, err := Decode(header, body)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Type != w.Type || got[i].Flags != w.Flags || !reflect.DeepEqual(got[i].Content, w.Content) {
			t.Fatalf("packet %d: got %v, want %v", i, got[i], w)
		}
	}
}

func readerCorpus(t *testing.T) [][]byte {
	var pkts [][]byte
	for _, b := range decodeCorpus(t) {
		if !clientOnly(b[0]) {
			pkts = append(pkts, b)
		}
	}
	pkts = append(pkts, mustAppend(t, &packets.Publish{Topic: "big", QoS: 2, PacketID: 77, Payload: bytes.Repeat([]byte("0123456789"), 20_000)}))
	return pkts
}

func TestReaderChunkSizes(t *testing.T) {
	pkts := readerCorpus(t)
	all := stream(pkts...)
	for _, n := range []int{1, 2, 3, 7, 100, 1000, 4096, 65_536, 70_001, len(all)} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := &memConn{chunks: chunks(all, n), eof: true}
			sameContents(t, drain(t, NewReader(0), c), pkts)
		})
	}
}

func TestReaderManyPacketsInOneRead(t *testing.T) {
	var pkts [][]byte
	for i := 0; i < 2000; i++ {
		pkts = append(pkts, mustAppend(t, &packets.Publish{Topic: "t", QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}}))
		pkts = append(pkts, mustAppend(t, &packets.Puback{PacketID: uint16(i + 1)}))
	}
	all := stream(pkts...)
	if len(all) >= defaultReadBuffer {
		t.Fatalf("test stream of %d bytes does not fit one read", len(all))
	}
	rd := NewReader(0)
	c := &memConn{chunks: [][]byte{all}}
	if n, err := rd.FillNow(c); n != len(all) || err != nil {
		t.Fatalf("FillNow = %d, %v", n, err)
	}
	var got []*Packet
	for {
		cp, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if cp == nil {
			break
		}
		got = append(got, cp)
	}
	sameContents(t, got, pkts)
	if rd.Buffered() != 0 {
		t.Fatalf("%d bytes left", rd.Buffered())
	}
}

func TestReaderRefusesOversizedBeforeAllocating(t *testing.T) {
	rd := NewReader(1024)
	c := &memConn{}
	c.push(mustAppend(t, &packets.Pingresp{}))
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	if cp, err := rd.Next(); err != nil || cp == nil {
		t.Fatalf("Next = %v, %v", cp, err)
	}
	before := cap(rd.buf)

	// A PUBLISH announcing 1 MiB: only its fixed header arrives.
	c.push(vbi.Append([]byte{0x30}, 1<<20))
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	cp, err := rd.Next()
	if !errors.Is(err, ErrPacketTooLarge) || cp != nil {
		t.Fatalf("Next = %v, %v; want ErrPacketTooLarge", cp, err)
	}
	for _, s := range []string{"PUBLISH", fmt.Sprint(1 + 3 + 1<<20), "1024"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if cap(rd.buf) != before {
		t.Fatalf("buffer capacity changed from %d to %d", before, cap(rd.buf))
	}
	// The error is final and nothing more is read.
	c.push([]byte{0xD0, 0})
	if _, err := rd.FillNow(c); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("FillNow after the error: %v", err)
	}
	if _, err := rd.Next(); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("Next after the error: %v", err)
	}
	if cap(rd.buf) != before || len(c.chunks) != 1 {
		t.Fatal("read or grew after the error")
	}
}

// TestReaderGrowsWithArrivingBytes checks that a legal but huge announced
// size costs memory only as its bytes arrive.
func TestReaderGrowsWithArrivingBytes(t *testing.T) {
	rd := NewReader(0)
	c := &memConn{}
	c.push(vbi.Append([]byte{0x30}, MaxRemainingLength))
	received := 0
	for i := 0; i < 10; i++ {
		c.push(make([]byte, 50_000))
		for len(c.chunks) > 0 {
			n, err := rd.FillNow(c)
			if err != nil {
				t.Fatal(err)
			}
			received += n
			if cp, err := rd.Next(); cp != nil || err != nil {
				t.Fatalf("Next = %v, %v", cp, err)
			}
		}
		if limit := max(defaultReadBuffer, 2*received); cap(rd.buf) > limit {
			t.Fatalf("buffer of %d bytes after receiving %d", cap(rd.buf), received)
		}
	}
}

func TestReaderMaxPacketSizeBoundary(t *testing.T) {
	p := mustAppend(t, &packets.Publish{Topic: "a", Payload: make([]byte, 100)})
	rd := NewReader(len(p))
	c := &memConn{chunks: [][]byte{p, p[:2]}}
	got := 0
	for len(c.chunks) > 0 {
		if _, err := rd.FillNow(c); err != nil {
			t.Fatal(err)
		}
		for {
			cp, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if cp == nil {
				break
			}
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d packets", got)
	}
	rd.SetMaxPacketSize(len(p) - 1)
	if rd.MaxPacketSize() != len(p)-1 {
		t.Fatalf("MaxPacketSize = %d", rd.MaxPacketSize())
	}
	if _, err := rd.Next(); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("one byte over the limit: %v", err)
	}
	rd.SetMaxPacketSize(-1)
	if rd.MaxPacketSize() != maxPacketSize {
		t.Fatalf("MaxPacketSize() = %d after SetMaxPacketSize(-1)", rd.MaxPacketSize())
	}
}

func TestReaderRemainingLength(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error // nil: incomplete, no error
	}{
		{"5-byte remaining length", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, ErrMalformedPacket},
		{"4 continuation bytes", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF}, ErrMalformedPacket},
		{"3 continuation bytes so far", []byte{0x30, 0xFF, 0xFF, 0xFF}, nil},
		{"largest remaining length", []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, nil},
	}
	for _, tc := range cases {
		rd := NewReader(0)
		if _, err := rd.FillNow(&memConn{chunks: [][]byte{tc.in}}); err != nil {
			t.Fatal(err)
		}
		cp, err := rd.Next()
		if cp != nil || !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: Next = %v, %v; want %v", tc.name, cp, err, tc.want)
		}
	}
}

func TestReaderTruncatedPacket(t *testing.T) {
	p := mustAppend(t, &packets.Publish{Topic: "a/b", QoS: 1, PacketID: 5, Payload: []byte("hello")})
	for cut := 1; cut < len(p); cut++ {
		rd := NewReader(0)
		c := &memConn{chunks: [][]byte{p[:cut]}, eof: true}
		if n, err := rd.FillNow(c); n != cut || err != nil {
			t.Fatalf("FillNow = %d, %v", n, err)
		}
		if cp, err := rd.Next(); cp != nil || err != nil {
			t.Fatalf("cut at %d: Next = %v, %v", cut, cp, err)
		}
		if _, err := rd.FillNow(c); !errors.Is(err, io.EOF) {
			t.Fatalf("cut at %d: FillNow at EOF = %v", cut, err)
		}
		if rd.Buffered() != cut {
			t.Fatalf("Buffered = %d, want %d", rd.Buffered(), cut)
		}
	}
}

func TestReaderGarbage(t *testing.T) {
	cases := map[string][]byte{
		"packet type 0":        {0x00, 0x00},
		"PUBLISH QoS 3":        {0x36, 0x00},
		"PUBREL flags 0":       {0x60, 0x02, 0, 1},
		"CONNACK flags":        {0x21, 0x03, 0, 0, 0},
		"text":                 []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
		"bad body":             {0x40, 0x01, 0x00},
		"after a good packet":  {0xD0, 0x00, 0xFF, 0xFF},
		"PINGRESP with a body": {0xD0, 0x01, 0x00},
	}
	for name, in := range cases {
		rd := NewReader(0)
		c := &memConn{chunks: [][]byte{in}}
		if _, err := rd.FillNow(c); err != nil {
			t.Fatal(err)
		}
		var err error
		for i := 0; i < 3; i++ {
			var cp *Packet
			if cp, err = rd.Next(); cp == nil {
				break
			}
		}
		if !errors.Is(err, ErrMalformedPacket) {
			t.Errorf("%s: %v, want ErrMalformedPacket", name, err)
		}
		if _, again := rd.Next(); again != err {
			t.Errorf("%s: error is not sticky: %v", name, again)
		}
		rd.Reset()
		c.push([]byte{0xD0, 0})
		if _, err := rd.FillNow(c); err != nil {
			t.Fatalf("%s: FillNow after Reset: %v", name, err)
		}
		if cp, err := rd.Next(); err != nil || cp == nil || cp.Type != packets.PINGRESP {
			t.Errorf("%s: after Reset: %v, %v", name, cp, err)
		}
	}
}

func TestReaderGrowsAndShrinks(t *testing.T) {
	big := mustAppend(t, &packets.Publish{Topic: "big", Payload: bytes.Repeat([]byte{7}, 300_000)})
	small := mustAppend(t, &packets.Puback{PacketID: 1})
	rd := NewReader(1 << 20)
	c := &memConn{chunks: chunks(stream(small, big, small, small), 10_000), eof: true}
	var got []*Packet
	grew := 0
	for {
		_, err := rd.FillNow(c)
		grew = max(grew, len(rd.buf))
		for {
			cp, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			if cp == nil {
				break
			}
			got = append(got, cp)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sameContents(t, got, [][]byte{small, big, small, small})
	if grew < len(big) || grew > 2*len(big) {
		t.Fatalf("buffer grew to %d for a packet of %d bytes", grew, len(big))
	}
	if len(rd.buf) != defaultReadBuffer {
		t.Fatalf("buffer of %d bytes after the big packet, want %d", len(rd.buf), defaultReadBuffer)
	}
}

func TestReaderPacketsSurviveBufferReuse(t *testing.T) {
	first := mustAppend(t, &packets.Publish{Topic: "keep/me", QoS: 1, PacketID: 1, Payload: []byte("precious")})
	rd := NewReader(0)
	c := &memConn{chunks: [][]byte{first}}
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	kept, err := rd.Next()
	if err != nil || kept == nil {
		t.Fatal(kept, err)
	}
	// Overwrite the whole buffer with other packets.
	other := mustAppend(t, &packets.Publish{Topic: "xxxxxxx", QoS: 1, PacketID: 2, Payload: []byte("XXXXXXXX")})
	c.push(bytes.Repeat(other, defaultReadBuffer/len(other)))
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	for {
		cp, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if cp == nil {
			break
		}
	}
	pub := kept.Content.(*packets.Publish)
	if pub.Topic != "keep/me" || string(pub.Payload) != "precious" {
		t.Fatalf("kept packet changed: %q %q", pub.Topic, pub.Payload)
	}
}

func TestReaderFillWait(t *testing.T) {
	rd := NewReader(0)
	c := &memConn{}
	if n, err := rd.FillWait(c, time.Time{}); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("FillWait with nothing = %d, %v", n, err)
	}
	c.push([]byte{0xD0, 0})
	if n, err := rd.FillWait(c, time.Time{}); n != 2 || err != nil {
		t.Fatalf("FillWait = %d, %v", n, err)
	}
	if cp, err := rd.Next(); err != nil || cp.Type != packets.PINGRESP {
		t.Fatalf("Next = %v, %v", cp, err)
	}
	if c.readWaitCalls != 2 || c.readNowCalls != 0 {
		t.Fatalf("ReadWait %d times, ReadNow %d times", c.readWaitCalls, c.readNowCalls)
	}
}

func TestReaderFullBufferWithoutNext(t *testing.T) {
	rd := &Reader{start: 64}
	ping := []byte{0xD0, 0}
	c := &memConn{chunks: [][]byte{bytes.Repeat(ping, 40)}}
	total := 0
	for i := 0; i < 3; i++ {
		n, err := rd.FillNow(c)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 64 {
		t.Fatalf("read %d bytes into a 64-byte buffer without Next", total)
	}
	if c.lastReadLength == 0 {
		t.Fatal("ReadNow was called with an empty buffer")
	}
}

func TestZeroReader(t *testing.T) {
	var rd Reader
	c := &memConn{chunks: [][]byte{{0xD0, 0}}}
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	if cp, err := rd.Next(); err != nil || cp == nil {
		t.Fatalf("Next = %v, %v", cp, err)
	}
	if rd.MaxPacketSize() != maxPacketSize {
		t.Fatalf("MaxPacketSize = %d", rd.MaxPacketSize())
	}
}

// refFrames frames data in one pass, as the reference for FuzzReader:
// the packets, and the error that ends the stream (nil when it ends with
// an incomplete packet or exactly at a packet boundary).
func refFrames(data []byte, limit int) ([]*Packet, error) {
	var out []*Packet
	for len(data) > 0 {
		if err := V5.checkHeader(data[0]); err != nil {
			return out, err
		}
		if clientOnly(data[0]) {
			return out, ErrMalformedPacket
		}
		rem, n, err := vbi.Parse(data[1:])
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, nil
		}
		size := 1 + n + rem
		if size > limit {
			return out, ErrPacketTooLarge
		}
		if size > len(data) {
			return out, nil
		}
		cp, err := Decode(data[0], data[1+n:size])
		if err != nil {
			return out, err
		}
		out = append(out, cp)
		data = data[size:]
	}
	return out, nil
}

// FuzzReader feeds arbitrary bytes through a Reader in chunks of
// arbitrary size. It checks that nothing panics, that the buffer never
// exceeds max(start size, limit), that errors are the package's
// sentinels, and that the result does not depend on the chunking.
func FuzzReader(f *testing.F) {
	f.Add(stream(mustAppend(f, &packets.Publish{Topic: "a", Payload: []byte("b")}), []byte{0xD0, 0}), uint8(1))
	f.Add(vbi.Append([]byte{0x30}, 1<<20), uint8(3))
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const start, limit = 64, 512
		rd := &Reader{start: start}
		rd.SetMaxPacketSize(limit)
		c := &memConn{chunks: chunks(data, int(chunk)+1), eof: true}
		var got []*Packet
		var gotErr error
	loop:
		for i := 0; ; i++ {
			if i > 2*len(data)+10 {
				t.Fatal("no progress")
			}
			_, err := rd.FillNow(c)
			if len(rd.buf) > max(start, limit) {
				t.Fatalf("buffer of %d bytes", len(rd.buf))
			}
			for {
				cp, nerr := rd.Next()
				if nerr != nil {
					gotErr = nerr
					break loop
				}
				if cp == nil {
					break
				}
				got = append(got, cp)
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				gotErr = err
				break
			}
		}
		want, wantErr := refFrames(data, limit)
		switch {
		case wantErr == nil && gotErr != nil:
			t.Fatalf("Reader failed with %v, reference did not", gotErr)
		case errors.Is(wantErr, ErrPacketTooLarge) && !errors.Is(gotErr, ErrPacketTooLarge),
			errors.Is(wantErr, ErrMalformedPacket) && !errors.Is(gotErr, ErrMalformedPacket):
			t.Fatalf("Reader error %v, reference %v", gotErr, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("Reader framed %d packets, reference %d", len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i].Content, want[i].Content) {
				t.Fatalf("packet %d differs: %v vs %v", i, got[i], want[i])
			}
		}
	})
}

// BenchmarkReaderPublish measures framing and decoding one 100-byte QoS 1
// PUBLISH out of a stream delivered in 64 KiB reads.
func BenchmarkReaderPublish(b *testing.B) {
	p, err := AppendPacket(nil, &packets.Publish{Topic: "sensors/room-1/temperature", QoS: 1, PacketID: 42, Payload: make([]byte, 100)}, 0)
	if err != nil {
		b.Fatal(err)
	}
	all := bytes.Repeat(p, defaultReadBuffer/len(p))
	rd := NewReader(0)
	c := &memConn{}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		cp, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		if cp == nil {
			c.push(all)
			if _, err := rd.FillNow(c); err != nil {
				b.Fatal(err)
			}
		}
	}
}
