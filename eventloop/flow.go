package eventloop

import (
	"context"
	"log/slog"
)

// Incoming flow control. MQTT 5 says a client that receives more QoS 1
// and 2 messages than its Receive Maximum, unfinished, may disconnect
// with 0x93 (receive maximum exceeded). The loop tolerates it instead:
// measured (see the journal), mosquitto 2.0 and mochi keep to the limit
// on a connection, but mochi resends every message of its in-flight
// table after a reconnect, far beyond the limit, in manual-ack mode; a
// DISCONNECT would only make it do so again on every connection.
// Nothing is lost either way: every message is delivered and
// acknowledged as usual, the session's bookkeeping is bounded by the
// 65,535 packet ids, and incoming ids never starve outgoing publishes
// (state.allocID). The overrun is reported through Options.Logger, once
// per connection.

// checkReceiveMaximum reports a broker exceeding Options.ReceiveMaximum.
func (l *EventLoop) checkReceiveMaximum() {
	rm := int(l.opts.ReceiveMaximum)
	if rm == 0 || l.rmWarned || l.log == nil {
		return
	}
	if held := l.st.IncomingHeld(); held > rm {
		l.rmWarned = true
		l.log.LogAttrs(context.Background(), slog.LevelWarn, "mqttloop: the broker exceeds the client's Receive Maximum (tolerated)",
			slog.Int("receive_maximum", rm), slog.Int("unfinished", held), slog.String("server", l.server))
	}
}
