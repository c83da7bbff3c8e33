package mqtttest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Direction says whether the broker read a packet or wrote it.
type Direction byte

const (
	// FromClient marks packets the broker read from a client.
	FromClient Direction = 1
	// ToClient marks packets the broker wrote to a client.
	ToClient Direction = 2
)

// String returns "from client" or "to client".
func (d Direction) String() string {
	switch d {
	case FromClient:
		return "from client"
	case ToClient:
		return "to client"
	}
	return fmt.Sprintf("Direction(%d)", byte(d))
}

// ErrCaptureDisabled is returned by the waiting methods of a Broker started
// with Options.DisableCapture.
var ErrCaptureDisabled = errors.New("mqtttest: packet capture is disabled")

// Captured is one packet the broker read or wrote.
//
// Packets read are recorded once mochi decoded them, before it acts on them;
// packets that fail to decode, or exceed the Maximum Packet Size, are not
// recorded. Packets written are recorded right after their bytes were
// written to the connection; when two goroutines of the broker write to the
// same client at once (say, a PUBACK and a forwarded PUBLISH), the order of
// their records may differ from the order on the wire.
type Captured struct {
	// Seq numbers records from 1 in the order they were recorded.
	Seq uint64
	// ClientID is the client's id. A CONNECT is recorded with the client
	// identifier it carries, which is "" when the client asks the broker
	// to assign one.
	ClientID string
	// Direction says whether the broker read or wrote the packet.
	Direction Direction
	// Type is the MQTT control packet type (1 CONNECT ... 15 AUTH).
	Type byte
	// Packet is mochi's form of the packet. (There are no raw bytes: the
	// ones mochi hands to its OnPacketSent hook are empty whenever it wrote
	// the packet straight to the connection, because bytes.Buffer.WriteTo
	// drains the buffer before the hook sees it.)
	Packet packets.Packet
}

// String describes the record briefly.
func (c Captured) String() string {
	name, ok := packets.PacketNames[c.Type]
	if !ok {
		name = fmt.Sprintf("Type(%d)", c.Type)
	}
	return fmt.Sprintf("#%d %s %s %q", c.Seq, name, c.Direction, c.ClientID)
}

// capture is an append-only log of Captured packets with a broadcast on
// every append.
type capture struct {
	mu      sync.Mutex
	log     []Captured
	changed chan struct{} // closed and replaced on every append
}

func newCapture() *capture {
	return &capture{changed: make(chan struct{})}
}

func (c *capture) add(rec Captured) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec.Seq = uint64(len(c.log)) + 1
	c.log = append(c.log, rec)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *capture) all() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.log...)
}

func (c *capture) last() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return uint64(len(c.log))
}

func (c *capture) wait(ctx context.Context, after uint64, match func(Captured) bool) (Captured, error) {
	next := after // index of the first record not yet looked at
	for {
		c.mu.Lock()
		for ; next < uint64(len(c.log)); next++ {
			if rec := c.log[next]; match(rec) {
				c.mu.Unlock()
				return rec, nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Captured{}, fmt.Errorf("mqtttest: waiting for packet: %w", ctx.Err())
		}
	}
}
