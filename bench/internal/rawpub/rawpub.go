// Package rawpub is the benchmark's feeding publisher: a minimal MQTT
// 3.1.1 client written straight onto a TCP socket, so that what feeds the
// subscribers under test is the same, and cheap, whatever client they are.
package rawpub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Pub is a connected raw publisher.
type Pub struct {
	nc net.Conn
	br *bufio.Reader
}

// Dial connects and completes CONNECT/CONNACK (MQTT 3.1.1, clean session,
// no keepalive).
func Dial(addr, clientID string) (*Pub, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02, 0, 0) // level 4, clean session, keepalive 0
	body = appendString(body, clientID)
	pkt := appendHeader(nil, 0x10, len(body))
	pkt = append(pkt, body...)
	if _, err := nc.Write(pkt); err != nil {
		nc.Close()
		return nil, err
	}
	p := &Pub{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := p.readPacket()
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetReadDeadline(time.Time{})
	if typ != 0x20 || len(b) != 2 || b[1] != 0 {
		nc.Close()
		return nil, fmt.Errorf("rawpub: bad CONNACK %x %x", typ, b)
	}
	return p, nil
}

// Close sends DISCONNECT and closes the connection.
func (p *Pub) Close() error {
	_, _ = p.nc.Write([]byte{0xe0, 0})
	return p.nc.Close()
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, first byte, rem int) []byte {
	b = append(b, first)
	for {
		d := byte(rem % 128)
		rem /= 128
		if rem > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if rem == 0 {
			return b
		}
	}
}

// AppendPublish appends a PUBLISH at QoS 0 (id ignored) or 1.
func AppendPublish(b []byte, topic string, payload []byte, qos byte, id uint16) []byte {
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	b = appendHeader(b, 0x30|qos<<1, rem)
	b = appendString(b, topic)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	return append(b, payload...)
}

func (p *Pub) readPacket() (byte, []byte, error) {
	first, err := p.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	rem, mul := 0, 1
	for i := 0; ; i++ {
		c, err := p.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		rem += int(c&0x7f) * mul
		mul *= 128
		if c&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("rawpub: bad remaining length")
		}
	}
	b := make([]byte, rem)
	if _, err := io.ReadFull(p.br, b); err != nil {
		return 0, nil, err
	}
	return first & 0xf0, b, nil
}

// BlastQoS0 publishes n QoS 0 messages on topic as fast as the socket
// takes them, 256 per write.
func (p *Pub) BlastQoS0(topic string, payload []byte, n int) error {
	const batch = 256
	var chunk []byte
	for range batch {
		chunk = AppendPublish(chunk, topic, payload, 0, 0)
	}
	one := len(chunk) / batch
	for sent := 0; sent < n; {
		k := min(batch, n-sent)
		if _, err := p.nc.Write(chunk[:k*one]); err != nil {
			return err
		}
		sent += k
	}
	return nil
}

// PublishQoS1 publishes n QoS 1 messages on topic with at most window
// unacknowledged, and returns once every PUBACK arrived.
func (p *Pub) PublishQoS1(topic string, payload []byte, n, window int) error {
	if window > 30000 {
		window = 30000
	}
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	var wg sync.WaitGroup
	var rerr error
	wg.Add(1)
	go func() { // the PUBACK reader
		defer wg.Done()
		for acked := 0; acked < n; {
			typ, _, err := p.readPacket()
			if err != nil {
				rerr = err
				return
			}
			if typ == 0x40 {
				acked++
				credit <- struct{}{}
			}
		}
	}()
	var buf []byte
	id := uint16(0)
	for sent := 0; sent < n; {
		<-credit
		buf = buf[:0]
		for {
			id++
			if id == 0 {
				id = 1
			}
			buf = AppendPublish(buf, topic, payload, 1, id)
			sent++
			if sent == n || len(buf) > 32<<10 {
				break
			}
			select {
			case <-credit:
				continue
			default:
			}
			break
		}
		if _, err := p.nc.Write(buf); err != nil {
			return err
		}
	}
	wg.Wait()
	return rerr
}

// Paced publishes one QoS 0 message every interval, on topics[i %
// len(topics)], until n were sent. Ticks that fall behind are caught up
// (one message per elapsed interval), so the average rate holds.
func (p *Pub) Paced(topics []string, payload []byte, n int, interval time.Duration) error {
	start := time.Now()
	var buf []byte
	for sent := 0; sent < n; {
		due := int(time.Since(start)/interval) + 1
		if due > n {
			due = n
		}
		buf = buf[:0]
		for ; sent < due; sent++ {
			buf = AppendPublish(buf, topics[sent%len(topics)], payload, 0, 0)
		}
		if len(buf) > 0 {
			if _, err := p.nc.Write(buf); err != nil {
				return err
			}
		}
		next := start.Add(time.Duration(sent) * interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	return nil
}
