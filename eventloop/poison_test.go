package eventloop_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/eventloop"
	"github.com/mqttloop/mqttloop/internal/rawbroker"
	"github.com/mqttloop/mqttloop/reconnect"
)

// TestPoisonMessage: a broker that ends the connection (DISCONNECT 0x99,
// payload format invalid, as mosquitto sends 0x81 for a malformed packet)
// whenever it reads one particular QoS 1/2 publish (here: one with
// content type "poison", which passes validation) would have it replayed, and
// refused, on every connection, with everything behind it waiting
// forever. After PoisonDrops connections in a row the loop gives it up:
// RequestFailed with ErrPoisonMessage and the request's own Tag, the
// message is gone from the session, and the publishes around it
// complete. With and without a session kept by the broker (replay, or
// requeued as new).
func TestPoisonMessage(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		for _, present := range []bool{true, false} {
			t.Run(fmt.Sprintf("qos%d/session_present=%v", qos, present), func(t *testing.T) {
				testPoisonMessage(t, qos, present)
			})
		}
	}
}

func testPoisonMessage(t *testing.T, qos byte, present bool) {
	srv := rawbroker.Listen(t)
	c := newClient(t, srv.URL(), eventloop.Options{Reconnect: reconnect.Automatic, BackOff: quickBackOff(), SessionExpiry: 3600e9})
	poison := eventloop.Publish{Topic: "t", QoS: qos, Tag: "poison", Properties: &eventloop.Properties{ContentType: "poison"}}
	drops := 0
	brokerDone := make(chan error, 1)
	go func() {
		brokerDone <- func() error {
			for {
				peer, err := srv.Accept(testContext(t))
				if err != nil {
					return err
				}
				if _, err := peer.ExpectConnect(); err != nil {
					return err
				}
				if err := peer.SendConnack(present && drops > 0, 0, nil); err != nil {
					return err
				}
				for {
					cp, err := peer.ReadPacket()
					if errors.Is(err, io.EOF) && drops == eventloop.PoisonDrops {
						return nil // the client's DISCONNECT (which paho cannot decode in its short form) and close
					}
					if err != nil {
						return fmt.Errorf("after %d drops: %w", drops, err)
					}
					var reply packets.Packet
					switch p := cp.Content.(type) {
					case *packets.Publish:
						if p.Properties != nil && p.Properties.ContentType == "poison" {
							drops++
							_ = peer.Write([]byte{0xE0, 0x01, 0x99})
							peer.Close()
							goto next
						}
						if p.QoS == 1 {
							reply = &packets.Puback{PacketID: p.PacketID}
						} else {
							reply = &packets.Pubrec{PacketID: p.PacketID}
						}
					case *packets.Pubrel:
						reply = &packets.Pubcomp{PacketID: p.PacketID}
					case *packets.Disconnect:
						return nil
					}
					if reply != nil {
						if err := peer.WritePacket(reply); err != nil {
							return err
						}
					}
				}
			next:
			}
		}()
	}()
	c.send(eventloop.Publish{Topic: "t", QoS: qos, Tag: "before"})
	c.send(poison)
	c.send(eventloop.Publish{Topic: "t", QoS: qos, Tag: "after"})
	var published []any
	var failed *eventloop.RequestFailed
	disconnects := 0
	for len(published) < 2 || failed == nil {
		switch n := c.next().(type) {
		case eventloop.Published:
			if n.Err != nil {
				t.Fatalf("Published %v with %v", n.Request.Tag, n.Err)
			}
			published = append(published, n.Request.Tag)
		case eventloop.RequestFailed:
			if failed != nil {
				t.Fatalf("a second RequestFailed: %v", n.Err)
			}
			failed = &n
		case eventloop.Disconnected:
			disconnects++
		}
	}
	if !errors.Is(failed.Err, eventloop.ErrPoisonMessage) {
		t.Fatalf("RequestFailed with %v, want ErrPoisonMessage", failed.Err)
	}
	if p, ok := failed.Request.(eventloop.Publish); !ok || p.Tag != "poison" {
		t.Fatalf("RequestFailed for %#v, want the poisoned publish", failed.Request)
	}
	if disconnects != eventloop.PoisonDrops {
		t.Fatalf("%d disconnects, want %d", disconnects, eventloop.PoisonDrops)
	}
	if published[0] != "before" || published[1] != "after" {
		t.Fatalf("published %v, want [before after]", published)
	}
	c.send(eventloop.Disconnect{})
	if err := c.end(); !errors.Is(err, eventloop.ErrDisconnected) {
		t.Fatalf("run ended with %v", err)
	}
	if err := <-brokerDone; err != nil {
		t.Fatal(err)
	}
	if drops != eventloop.PoisonDrops {
		t.Fatalf("the broker dropped %d connections, want %d", drops, eventloop.PoisonDrops)
	}
	if n := c.loop.State().InFlight() + c.loop.State().Queued(); n != 0 {
		t.Fatalf("%d requests left in the session", n)
	}
}
