package eventloop_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
)

// syncBuffer is a log destination safe for the loop's goroutine and the
// test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIncomingIDsDoNotStarve: a broker ignores the client's Receive
// Maximum (10) and keeps 65,535 QoS 2 messages unreleased, every packet
// id. The messages are delivered, the overrun is logged, and the
// client's own QoS 1 publish still goes out at once and completes:
// packet ids of the two directions are independent.
func TestIncomingIDsDoNotStarve(t *testing.T) {
	srv := rawbroker.Listen(t)
	var logs syncBuffer
	c := newClient(t, srv.URL(), eventloop.Options{ReceiveMaximum: 10,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	peer, err := srv.Accept(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.ExpectConnect(); err != nil {
		t.Fatal(err)
	}
	if err := peer.SendConnack(false, 0, nil); err != nil {
		t.Fatal(err)
	}
	c.expectConnected()
	var flood []byte
	for id := 1; id <= 65535; id++ {
		flood = append(flood, 0x34, 0x06, 0x00, 0x01, 't', byte(id>>8), byte(id), 0x00)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- peer.Write(flood) }()
	// The broker reads the PUBRECs, then the client's publish.
	got := make(chan error, 1)
	go func() {
		got <- func() error {
			recs := 0
			for {
				cp, err := peer.ReadPacket()
				if err != nil {
					return err
				}
				switch p := cp.Content.(type) {
				case *packets.Pubrec:
					recs++
				case *packets.Publish:
					if recs != 65535 {
						return errors.New("the publish came before every PUBREC")
					}
					return peer.WritePacket(&packets.Puback{PacketID: p.PacketID})
				}
			}
		}()
	}()
	for i := 0; i < 65535; i++ {
		if m := expect[eventloop.Message](c); m.QoS != 2 {
			t.Fatalf("message at QoS %d", m.QoS)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	c.send(eventloop.Publish{Topic: "out", QoS: 1, Tag: "mine"})
	if p := expect[eventloop.Published](c); p.Request.Tag != "mine" || p.Err != nil {
		t.Fatalf("Published %v %v", p.Request.Tag, p.Err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "exceeds the client's Receive Maximum") {
		t.Fatalf("the overrun was not logged: %q", logs.String())
	}
}
