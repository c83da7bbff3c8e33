package eventloop

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttloop/mqttloop/internal/wire"
)

// only5 is the error of a request that needs MQTT 5 on a 3.1.1 loop.
func only5(what string) error {
	return fmt.Errorf("%w: %w: %s", ErrInvalidRequest, ErrMQTT5Only, what)
}

// empty reports whether p would put no property on the wire.
func (p *Properties) empty() bool {
	return p == nil || !p.PayloadIsUTF8 && p.MessageExpiry <= 0 && p.ContentType == "" &&
		p.ResponseTopic == "" && len(p.CorrelationData) == 0 && p.User.empty()
}

// publishPacket validates a Publish for protocol version v and turns it
// into a PUBLISH packet.
func publishPacket(r Publish, v byte) (*packets.Publish, error) {
	if err := requestRules(v).publish(r); err != nil {
		return nil, err
	}
	p := &packets.Publish{Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain}
	if r.Properties != nil {
		p.Properties = toPacketProps(r.Properties)
	}
	return p, nil
}

// subscribePacket validates a Subscribe for protocol version v and turns
// it into a SUBSCRIBE packet.
func subscribePacket(r Subscribe, v byte) (*packets.Subscribe, error) {
	if err := requestRules(v).subscribe(r); err != nil {
		return nil, err
	}
	p := &packets.Subscribe{Properties: &packets.Properties{}}
	for _, f := range r.Filters {
		p.Subscriptions = append(p.Subscriptions, packets.SubOptions{
			Topic: f.Topic, QoS: f.QoS, NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling,
		})
	}
	if r.SubscriptionID > 0 {
		id := r.SubscriptionID
		p.Properties.SubscriptionIdentifier = &id
	}
	p.Properties.User = r.UserProperties.packets()
	return p, nil
}

// unsubscribePacket validates an Unsubscribe for protocol version v and
// turns it into an UNSUBSCRIBE packet.
func unsubscribePacket(r Unsubscribe, v byte) (*packets.Unsubscribe, error) {
	if err := requestRules(v).unsubscribe(r); err != nil {
		return nil, err
	}
	return &packets.Unsubscribe{Topics: r.Topics, Properties: &packets.Properties{User: r.UserProperties.packets()}}, nil
}

// toPacketProps converts properties for the wire; never nil.
func toPacketProps(p *Properties) *packets.Properties {
	out := &packets.Properties{}
	if p == nil {
		return out
	}
	if p.PayloadIsUTF8 {
		one := byte(1)
		out.PayloadFormat = &one
	}
	if p.MessageExpiry > 0 {
		secs := wholeSeconds(p.MessageExpiry)
		out.MessageExpiry = &secs
	}
	out.ContentType = p.ContentType
	out.ResponseTopic = p.ResponseTopic
	out.CorrelationData = p.CorrelationData
	out.User = p.User.packets()
	return out
}

// fromPacketProps converts the properties of a PUBLISH; nil when empty.
// For a received one, pkt is the decoded packet, which holds the user
// properties (compact) and every subscription identifier; for one of our
// own (a session restored without its tags), pkt is nil.
func fromPacketProps(pp *packets.Properties, pkt *wire.Packet) *Properties {
	if pp == nil {
		return nil
	}
	p := &Properties{
		PayloadIsUTF8:   pp.PayloadFormat != nil && *pp.PayloadFormat == 1,
		ContentType:     pp.ContentType,
		ResponseTopic:   pp.ResponseTopic,
		CorrelationData: pp.CorrelationData,
	}
	if pp.MessageExpiry != nil {
		p.MessageExpiry = time.Duration(*pp.MessageExpiry) * time.Second
	}
	if pkt != nil {
		p.User = UserProperties{enc: pkt.User()}
		p.SubscriptionIDs = pkt.SubscriptionIDs()
	} else {
		p.User = userPropertiesFrom(pp.User)
	}
	if p.SubscriptionIDs == nil && pp.SubscriptionIdentifier != nil {
		p.SubscriptionIDs = []int{*pp.SubscriptionIdentifier}
	}
	if !p.PayloadIsUTF8 && pp.PayloadFormat == nil && p.MessageExpiry == 0 && pp.MessageExpiry == nil &&
		p.ContentType == "" && p.ResponseTopic == "" && p.CorrelationData == nil && p.User.empty() &&
		p.SubscriptionIDs == nil {
		return nil
	}
	return p
}

// publishRequestFrom rebuilds a Publish request from its packet (for
// sessions restored without their tags).
func publishRequestFrom(p *packets.Publish) Publish {
	r := Publish{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
	r.Properties = fromPacketProps(p.Properties, nil)
	return r
}

// subscribeRequestFrom rebuilds a Subscribe request from its packet.
func subscribeRequestFrom(p *packets.Subscribe) Subscribe {
	r := Subscribe{}
	for _, o := range p.Subscriptions {
		r.Filters = append(r.Filters, Filter{Topic: o.Topic, QoS: o.QoS, NoLocal: o.NoLocal,
			RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling})
	}
	if p.Properties != nil && p.Properties.SubscriptionIdentifier != nil {
		r.SubscriptionID = *p.Properties.SubscriptionIdentifier
	}
	return r
}

// messageFrom makes the notification of a received PUBLISH, decoded as
// pkt.
func messageFrom(p *packets.Publish, pkt *wire.Packet) Message {
	return Message{
		Topic:      p.Topic,
		Payload:    p.Payload,
		QoS:        p.QoS,
		Retain:     p.Retain,
		Duplicate:  p.Duplicate,
		PacketID:   p.PacketID,
		Properties: fromPacketProps(p.Properties, pkt),
	}
}

// redact removes user info (and so any password) from a server URL.
func redact(server string) string {
	u, err := url.Parse(server)
	if err != nil || u.User == nil {
		return server
	}
	u.User = nil
	return u.String()
}

// maxLoggedPayload caps the payload bytes in a debug record.
const maxLoggedPayload = 64

// logPacket writes a debug record for a packet. Passwords are never
// logged; payloads are truncated.
func (l *EventLoop) logPacket(dir string, p packets.Packet) { l.logPacketOn(dir, 0, p) }

// logPacketOn is logPacket for a packet on stream (0: the control stream);
// in multi-stream mode the record says which.
func (l *EventLoop) logPacketOn(dir string, stream int, p packets.Packet) {
	attrs := []slog.Attr{slog.String("dir", dir)}
	if l.multiStream() {
		attrs = append(attrs, slog.Int("stream", stream))
	}
	switch p := p.(type) {
	case *packets.Connect:
		attrs = append(attrs, slog.String("type", "CONNECT"), slog.String("client_id", p.ClientID),
			slog.Int("keepalive", int(p.KeepAlive)), slog.Bool("clean_start", p.CleanStart),
			slog.Bool("username", p.UsernameFlag), slog.Bool("password", p.PasswordFlag), slog.Bool("will", p.WillFlag))
	case *packets.Connack:
		attrs = append(attrs, slog.String("type", "CONNACK"), slog.Bool("session_present", p.SessionPresent),
			slog.Int("reason", int(p.ReasonCode)))
	case *packets.Publish:
		payload := p.Payload
		if len(payload) > maxLoggedPayload {
			payload = payload[:maxLoggedPayload]
		}
		if p.Properties != nil && p.Properties.TopicAlias != nil {
			attrs = append(attrs, slog.Int("alias", int(*p.Properties.TopicAlias)))
		}
		attrs = append(attrs, slog.String("type", "PUBLISH"), slog.String("topic", p.Topic),
			slog.Int("qos", int(p.QoS)), slog.Int("id", int(p.PacketID)), slog.Bool("retain", p.Retain),
			slog.Bool("dup", p.Duplicate), slog.Int("size", len(p.Payload)), slog.String("payload", fmt.Sprintf("%q", payload)))
	case *packets.Puback:
		attrs = append(attrs, slog.String("type", "PUBACK"), slog.Int("id", int(p.PacketID)), slog.Int("reason", int(p.ReasonCode)))
	case *packets.Pubrec:
		attrs = append(attrs, slog.String("type", "PUBREC"), slog.Int("id", int(p.PacketID)), slog.Int("reason", int(p.ReasonCode)))
	case *packets.Pubrel:
		attrs = append(attrs, slog.String("type", "PUBREL"), slog.Int("id", int(p.PacketID)), slog.Int("reason", int(p.ReasonCode)))
	case *packets.Pubcomp:
		attrs = append(attrs, slog.String("type", "PUBCOMP"), slog.Int("id", int(p.PacketID)), slog.Int("reason", int(p.ReasonCode)))
	case *packets.Subscribe:
		topics := make([]string, len(p.Subscriptions))
		for i, s := range p.Subscriptions {
			topics[i] = s.Topic
		}
		attrs = append(attrs, slog.String("type", "SUBSCRIBE"), slog.Int("id", int(p.PacketID)), slog.Any("filters", topics))
	case *packets.Suback:
		attrs = append(attrs, slog.String("type", "SUBACK"), slog.Int("id", int(p.PacketID)), slog.Any("reasons", p.Reasons))
	case *packets.Unsubscribe:
		attrs = append(attrs, slog.String("type", "UNSUBSCRIBE"), slog.Int("id", int(p.PacketID)), slog.Any("filters", p.Topics))
	case *packets.Unsuback:
		attrs = append(attrs, slog.String("type", "UNSUBACK"), slog.Int("id", int(p.PacketID)), slog.Any("reasons", p.Reasons))
	case *packets.Pingreq:
		attrs = append(attrs, slog.String("type", "PINGREQ"))
	case *packets.Pingresp:
		attrs = append(attrs, slog.String("type", "PINGRESP"))
	case *packets.Disconnect:
		attrs = append(attrs, slog.String("type", "DISCONNECT"), slog.Int("reason", int(p.ReasonCode)))
	case *packets.Auth:
		attrs = append(attrs, slog.String("type", "AUTH"), slog.Int("reason", int(p.ReasonCode)))
	default:
		attrs = append(attrs, slog.String("type", fmt.Sprintf("%T", p)))
	}
	attrs = append(attrs, slog.String("server", l.server))
	l.log.LogAttrs(context.Background(), slog.LevelDebug, "mqtt packet", attrs...)
}
