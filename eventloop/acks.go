// Acknowledgements handed in from any goroutine (EventLoop.Ack).

package eventloop

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// ackQueue holds the acks handed to EventLoop.Ack until the loop takes
// them, and whether a run is in progress to take them.
type ackQueue struct {
	mu      sync.Mutex
	running bool  // between Run and the end of the run
	q       []Ack // waiting for the loop
	spare   []Ack // the previous q, reused
	waiting atomic.Bool
}

// Ack acknowledges an incoming message in manual-ack mode
// (Options.ManualAcks): the loop sends its PUBACK (QoS 1) or PUBREC
// (QoS 2). It is SendAck(m.Ack()).
//
// Ack is safe to call from any goroutine at any time during a run, and
// never waits for the loop or the requests channel: a handler on a worker
// goroutine acks when it is done while the goroutine calling Next goes on.
// The loop takes the ack at its next iteration (it is woken if it was
// waiting) and reports an ack it cannot apply as RequestFailed, as for
// an Ack sent on the channel (ErrUnknownPacketID, ErrStaleAck).
//
// Acking a QoS 0 message does nothing and returns nil. Between runs (before
// Run, after Next returned the run's error) Ack returns ErrNotRunning: the
// message stays unacknowledged, and the broker delivers it again.
func (l *EventLoop) Ack(m Message) error { return l.SendAck(m.Ack()) }

// SendAck is Ack for an Ack request made with Message.Ack, for example to
// refuse a message with a reason code of 0x80 or more (MQTT 5). The same
// rules apply; an Ack that can never be sent (a reason code on MQTT 3.1.1)
// is refused at once.
func (l *EventLoop) SendAck(a Ack) error {
	if a.QoS == 0 {
		return nil
	}
	if err := l.checkAck(a); err != nil {
		return err
	}
	aq := &l.acks
	aq.mu.Lock()
	if !aq.running {
		aq.mu.Unlock()
		return fmt.Errorf("%w: acknowledging packet id %d", ErrNotRunning, a.PacketID)
	}
	aq.q = append(aq.q, a)
	aq.waiting.Store(true)
	aq.mu.Unlock()
	l.poke()
	return nil
}

// checkAck refuses an Ack the protocol version cannot express or whose
// reason code a client may not send (validate.go).
func (l *EventLoop) checkAck(a Ack) error {
	return requestRules(l.opts.ProtocolVersion).ack(a)
}

// startAcks opens the queue for a run.
func (l *EventLoop) startAcks() {
	l.acks.mu.Lock()
	l.acks.running = true
	l.acks.mu.Unlock()
}

// takeAcks applies the acks handed to Ack since the last call. With stop
// set the queue closes: later calls to Ack fail with ErrNotRunning.
func (l *EventLoop) takeAcks(stop bool) {
	aq := &l.acks
	if !aq.waiting.Load() && !stop {
		return
	}
	aq.mu.Lock()
	q := aq.q
	aq.q, aq.spare = aq.spare[:0], nil
	aq.waiting.Store(false)
	if stop {
		aq.running = false
	}
	aq.mu.Unlock()
	for i, a := range q {
		if err := l.ack(a); err != nil {
			l.emit(RequestFailed{Request: a, Err: err})
		}
		q[i] = Ack{}
	}
	aq.mu.Lock()
	if aq.spare == nil {
		aq.spare = q[:0]
	}
	aq.mu.Unlock()
}
