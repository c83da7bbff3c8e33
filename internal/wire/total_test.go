package wire

import (
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// TestTotals: Reader.Total and Writer.Total count the bytes read and
// written, through both fill and both flush methods, across Reset; a
// failed write counts what it wrote.
func TestTotals(t *testing.T) {
	rd := NewReader(0)
	c := &memConn{}
	c.push([]byte{0xd0, 0x00}, []byte{0xd0, 0x00, 0xd0}) // PINGRESPs
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.FillWait(c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	rd.Reset()
	c.push([]byte{0x00})
	if _, err := rd.FillNow(c); err != nil {
		t.Fatal(err)
	}
	if got := rd.Total(); got != 6 {
		t.Fatalf("Reader.Total %d, want 6", got)
	}

	w := NewWriter(0)
	pub := &packets.Publish{Topic: "t", Payload: make([]byte, 100)}
	if err := w.Append(pub); err != nil {
		t.Fatal(err)
	}
	one := w.Buffered()
	if err := w.Flush(c, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(pub); err != nil {
		t.Fatal(err)
	}
	s := &nowSink{room: 40}
	for done := false; !done; {
		var err error
		if done, err = w.FlushNow(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Append(pub); err != nil {
		t.Fatal(err)
	}
	c.writeErr = errors.New("broken")
	if err := w.Flush(c, time.Time{}); err == nil {
		t.Fatal("Flush did not fail")
	}
	if got, want := w.Total(), uint64(2*one+one/2); got != want {
		t.Fatalf("Writer.Total %d, want %d", got, want)
	}
}
