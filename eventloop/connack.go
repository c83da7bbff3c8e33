package eventloop

import (
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
)

// fillConnack copies into c what the broker announced in a successful
// CONNACK beyond the limits the session applies: feature availability,
// server keepalive, session expiry, response information, server
// reference and diagnostics. Absent properties keep their MQTT 5
// defaults (features available, the options' session expiry).
func (l *EventLoop) fillConnack(c *Connected, ack *packets.Connack, user wire.UserProps) {
	c.WildcardSubscriptionAvailable = true
	c.SharedSubscriptionAvailable = true
	c.SubscriptionIdentifiersAvailable = true
	c.SessionExpiry = l.opts.SessionExpiry
	pr := ack.Properties
	if pr == nil {
		return
	}
	if pr.WildcardSubAvailable != nil {
		c.WildcardSubscriptionAvailable = *pr.WildcardSubAvailable != 0
	}
	if pr.SharedSubAvailable != nil {
		c.SharedSubscriptionAvailable = *pr.SharedSubAvailable != 0
	}
	if pr.SubIDAvailable != nil {
		c.SubscriptionIdentifiersAvailable = *pr.SubIDAvailable != 0
	}
	if pr.TopicAliasMaximum != nil {
		c.TopicAliasMaximum = *pr.TopicAliasMaximum
	}
	c.ServerKeepAlive = pr.ServerKeepAlive != nil
	if pr.SessionExpiryInterval != nil {
		c.SessionExpiry = time.Duration(*pr.SessionExpiryInterval) * time.Second
	}
	c.ResponseInformation = pr.ResponseInfo
	c.ServerReference = pr.ServerReference
	c.ReasonString = pr.ReasonString
	c.UserProperties = UserProperties{enc: user}
}

// reasonCodeError builds the error of a refusal (CONNACK) or of a broker
// DISCONNECT from its reason code and properties.
func reasonCodeError(packet string, code byte, pr *packets.Properties) *ReasonCodeError {
	e := &ReasonCodeError{Packet: packet, Code: code}
	if pr != nil {
		e.ReasonString = pr.ReasonString
		e.ServerReference = pr.ServerReference
	}
	return e
}
