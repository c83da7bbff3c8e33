package eventloop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/vbi"
	"github.com/mqttloop/mqttloop/internal/wire"
	"github.com/mqttloop/mqttloop/netio"
	"github.com/mqttloop/mqttloop/reconnect"
)

// scriptBroker is an in-memory netio.Conn playing a broker that brings the
// client's session into every stage of every flow, then sends what the
// fuzzer wrote, then closes:
//
//   - outgoing QoS 1 publish awaiting PUBACK (tag 1);
//   - outgoing QoS 2 publish awaiting PUBREC (tag 2);
//   - outgoing QoS 2 publish awaiting PUBCOMP (tag 3: PUBREC sent, the
//     client answered PUBREL);
//   - a QoS 1 publish still queued, the window (MaxInflight 3) being full
//     (tag 4);
//   - SUBSCRIBE awaiting SUBACK, UNSUBSCRIBE awaiting UNSUBACK;
//   - incoming QoS 2 publish (id 0x77) answered with PUBREC, awaiting
//     PUBREL; an incoming QoS 1 publish (id 0x78), acknowledged.
//
// It reacts to what the client writes, on the client's goroutine, so a
// run is deterministic.
type scriptBroker struct {
	codec wire.Codec
	fuzz  []byte
	sig   chan os.Signal

	in       []byte // what the client reads next
	eof      bool   // after in: io.EOF
	released bool   // the fuzzer's bytes are queued
	partial  []byte // what the client wrote that does not frame yet
	ids      map[string]uint16
	seen     map[string]int
	err      error // the client wrote something the script cannot read
}

func newScriptBroker(codec wire.Codec, fuzz []byte) *scriptBroker {
	return &scriptBroker{codec: codec, fuzz: fuzz, sig: make(chan os.Signal, 1), ids: map[string]uint16{}, seen: map[string]int{}}
}

type wakeSignal struct{}

func (wakeSignal) String() string { return "script" }
func (wakeSignal) Signal()        {}

func (s *scriptBroker) queue(p packets.Packet) {
	b, err := s.codec.Append(s.in, p, 0)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("script cannot encode %T: %w", p, err)
	}
	s.in = b
}

func (s *scriptBroker) ReadNow(p []byte) (int, error) {
	if len(s.in) == 0 {
		if s.eof {
			return 0, io.EOF
		}
		return 0, nil
	}
	n := copy(p, s.in)
	s.in = s.in[n:]
	return n, nil
}

func (s *scriptBroker) ReadWait(p []byte, _ time.Time) (int, error) {
	n, err := s.ReadNow(p)
	if n == 0 && err == nil {
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

func (s *scriptBroker) Arm() (netio.Readiness, error) {
	if len(s.in) > 0 || s.eof {
		select {
		case s.sig <- wakeSignal{}:
		default:
		}
	}
	return netio.Readiness{Signal: s.sig}, nil
}

func (s *scriptBroker) Disarm()                          {}
func (s *scriptBroker) SetWriteDeadline(time.Time) error { return nil }
func (s *scriptBroker) Close() error                     { return nil }
func (s *scriptBroker) Transport() string                { return "script" }

// Write reads the client's packets and answers as the script says.
func (s *scriptBroker) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for len(s.partial) > 1 {
		rem, n, err := vbi.Parse(s.partial[1:])
		if err != nil || n == 0 || len(s.partial) < 1+n+rem {
			break
		}
		header, body := s.partial[0], s.partial[1+n:1+n+rem]
		s.partial = s.partial[1+n+rem:]
		pkt, err := s.codec.Decode(header, body)
		if err != nil {
			s.err = fmt.Errorf("script cannot read the client's % x: %w", body, err)
			continue
		}
		s.react(pkt.Content)
	}
	if !s.released && s.seen["PUBLISH"] >= 3 && s.seen["SUBSCRIBE"] == 1 && s.seen["UNSUBSCRIBE"] == 1 &&
		s.seen["PUBREL"] == 1 && s.seen["PUBREC"] == 1 && s.seen["PUBACK"] == 1 {
		s.released = true
		s.in = append(s.in, s.fuzz...)
		s.eof = true
	}
	return len(p), nil
}

func (s *scriptBroker) react(p packets.Packet) {
	switch p := p.(type) {
	case *packets.Connect:
		s.queue(&packets.Connack{})
		s.queue(&packets.Publish{Topic: "in/q2", QoS: 2, PacketID: 0x77, Payload: []byte("two")})
		s.queue(&packets.Publish{Topic: "in/q1", QoS: 1, PacketID: 0x78, Payload: []byte("one")})
	case *packets.Publish:
		s.seen["PUBLISH"]++
		if p.QoS == 2 {
			s.seen["QoS 2"]++
			if s.seen["QoS 2"] == 2 {
				s.ids["pubcomp"] = p.PacketID
				s.queue(&packets.Pubrec{PacketID: p.PacketID})
			} else {
				s.ids["pubrec"] = p.PacketID
			}
		} else {
			s.ids[fmt.Sprint("puback", s.seen["PUBLISH"])] = p.PacketID
		}
	case *packets.Subscribe:
		s.seen["SUBSCRIBE"]++
		s.ids["suback"] = p.PacketID
	case *packets.Unsubscribe:
		s.seen["UNSUBSCRIBE"]++
		s.ids["unsuback"] = p.PacketID
	case *packets.Pubrel:
		s.seen["PUBREL"]++
	case *packets.Pubrec:
		s.seen["PUBREC"]++
	case *packets.Puback:
		s.seen["PUBACK"]++
	}
}

// runScript runs a real EventLoop against the script with data as the
// broker's bytes after the setup, until the run ends, and checks what
// must hold whatever the broker sent: no panic, the run ends (the
// connection is lost or the broker disconnected) within the guard, and
// every QoS 1/2 publish handed to the loop was either notified or is
// still in the session, exactly once.
func runScript(t testing.TB, v311 bool, data []byte) *scriptBroker {
	t.Helper()
	codec, version := wire.V5, byte(5)
	if v311 {
		codec, version = wire.V311, 4
	}
	script := newScriptBroker(codec, data)
	loop, err := eventloop.New(eventloop.Options{
		Servers:         []string{"mqtt://script.invalid:1883"},
		ClientID:        "fuzz",
		ProtocolVersion: version,
		Reconnect:       reconnect.Never,
		MaxInflight:     3,
		Dial:            func(context.Context, string) (netio.Conn, error) { return script, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := eventloop.Subscribe{Filters: []eventloop.Filter{{Topic: "f/#", QoS: 2}}, Tag: "sub"}
	if !v311 {
		sub.SubscriptionID = 9
	}
	reqs := make(chan eventloop.Request, 8)
	reqs <- eventloop.Publish{Topic: "out/1", QoS: 1, Payload: []byte("a"), Tag: 1}
	reqs <- eventloop.Publish{Topic: "out/2", QoS: 2, Payload: []byte("b"), Tag: 2}
	reqs <- eventloop.Publish{Topic: "out/3", QoS: 2, Payload: []byte("c"), Tag: 3}
	reqs <- sub
	reqs <- eventloop.Unsubscribe{Topics: []string{"u"}, Tag: "unsub"}
	reqs <- eventloop.Publish{Topic: "out/4", QoS: 1, Payload: []byte("d"), Tag: 4}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := loop.Run(ctx, reqs)
	notified := map[any]int{}
	for {
		n, err := events.Next()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the run did not end within the guard (stalled or spinning): %v", err)
			}
			if !errors.Is(err, eventloop.ErrConnectionLost) {
				t.Fatalf("run ended with %v, want ErrConnectionLost", err)
			}
			break
		}
		switch n := n.(type) {
		case eventloop.Published:
			notified[n.Request.Tag]++
		case eventloop.RequestFailed:
			if p, ok := n.Request.(eventloop.Publish); ok {
				notified[p.Tag]++
			}
		}
	}
	if script.err != nil {
		t.Fatal(script.err)
	}
	if !script.released {
		t.Fatalf("the session never reached the stages the script waits for: saw %v", script.seen)
	}
	held := map[any]int{}
	st := loop.State()
	for _, o := range st.InFlightPublishes() {
		if r, ok := o.Tag.(eventloop.Publish); ok {
			held[r.Tag]++
		}
	}
	for _, p := range st.QueuedRequests() {
		if r, ok := p.Tag.(eventloop.Publish); ok {
			held[r.Tag]++
		}
	}
	for tag := 1; tag <= 4; tag++ {
		if notified[tag]+held[tag] != 1 {
			t.Fatalf("publish %d: notified %d times, held %d times in the session; want exactly one of the two", tag, notified[tag], held[tag])
		}
	}
	return script
}

// scriptSeeds are broker bytes for the stages the script sets up: the
// acks that complete each flow, and bytes a broker must not send.
func scriptSeeds(t testing.TB, codec wire.Codec, ids map[string]uint16) [][]byte {
	enc := func(ps ...packets.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = codec.Append(b, p, 0); err != nil {
				t.Fatalf("seed %T: %v", p, err)
			}
		}
		return b
	}
	seeds := [][]byte{
		nil,
		enc(&packets.Puback{PacketID: ids["puback1"]}),
		enc(&packets.Pubrec{PacketID: ids["pubrec"]}),
		enc(&packets.Pubcomp{PacketID: ids["pubcomp"]}),
		enc(&packets.Pubrel{PacketID: 0x77}),
		enc(&packets.Suback{PacketID: ids["suback"], Reasons: []byte{2}}),
		enc(&packets.Unsuback{PacketID: ids["unsuback"], Reasons: []byte{0}}),
		enc(&packets.Puback{PacketID: ids["puback1"]}, &packets.Pubrec{PacketID: ids["pubrec"]},
			&packets.Pubcomp{PacketID: ids["pubcomp"]}, &packets.Pubrel{PacketID: 0x77},
			&packets.Suback{PacketID: ids["suback"], Reasons: []byte{2}},
			&packets.Unsuback{PacketID: ids["unsuback"], Reasons: []byte{0}}),
		enc(&packets.Publish{Topic: "f/x", QoS: 2, PacketID: 0x77, Duplicate: true, Payload: []byte("again")}),
		enc(&packets.Pingresp{}, &packets.Disconnect{}),
		{0x40, 0x02, 0x03, 0xE7},
		{0x30, 0xFF, 0xFF, 0xFF, 0x7F},
	}
	if codec == wire.V5 {
		seeds = append(seeds,
			[]byte{0x30, 0x09, 0x00, 0x01, 't', 0x04, 0x0b, 0x01, 0x0b, 0x02, 'x'},
			enc(&packets.Puback{PacketID: ids["puback1"], ReasonCode: 0x80, Properties: &packets.Properties{
				ReasonString: "no", User: []packets.User{{Key: "k", Value: "v"}}}}),
			enc(&packets.Pubrec{PacketID: ids["pubrec"], ReasonCode: 0x91}),
			enc(&packets.Disconnect{ReasonCode: 0x8E, Properties: &packets.Properties{ReasonString: "bye"}}),
			enc(&packets.Auth{ReasonCode: 0x18}),
		)
	}
	return seeds
}

// FuzzLoop drives the whole path the loop uses after CONNACK — the
// Reader's framing, the codec (MQTT 5 and 3.1.1), the session's
// transitions, the Writer — with arbitrary broker bytes against a session
// holding flows in every stage (see scriptBroker and runScript for what
// is checked).
func FuzzLoop(f *testing.F) {
	for _, v311 := range []bool{false, true} {
		codec := wire.V5
		if v311 {
			codec = wire.V311
		}
		ids := runScript(f, v311, nil).ids
		for _, s := range scriptSeeds(f, codec, ids) {
			f.Add(v311, s)
		}
	}
	f.Fuzz(func(t *testing.T, v311 bool, data []byte) {
		runScript(t, v311, data)
	})
}

// TestScriptSeeds runs the seeds as a test, so that the setup and each
// flow's completion are checked on every test run, and checks that the
// acks the seeds carry complete every flow.
func TestScriptSeeds(t *testing.T) {
	for _, v311 := range []bool{false, true} {
		codec := wire.V5
		if v311 {
			codec = wire.V311
		}
		ids := runScript(t, v311, nil).ids
		for _, s := range scriptSeeds(t, codec, ids) {
			runScript(t, v311, s)
		}
	}
}
