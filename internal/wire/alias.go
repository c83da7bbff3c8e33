package wire

import (
	"slices"

	"github.com/eclipse/paho.golang/packets"
)

// publishAliasOnly reports whether a PUBLISH's only property is a Topic
// Alias, as the event loop writes them when it assigns aliases.
func publishAliasOnly(pr *packets.Properties) bool {
	if pr == nil || pr.TopicAlias == nil {
		return false
	}
	c := *pr
	c.TopicAlias = nil
	return publishPropsEmpty(&c)
}

// appendPublishAlias encodes a PUBLISH whose only property is a Topic
// Alias without allocating (beyond growing dst): the same bytes as paho.
func appendPublishAlias(dst []byte, p *packets.Publish, maxSize int) ([]byte, error) {
	alias := *p.Properties.TopicAlias
	rem := 2 + len(p.Topic) + 1 + 3 + len(p.Payload)
	if p.QoS > 0 {
		rem += 2
	}
	total, err := checkSize(packets.PUBLISH, rem, maxSize)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, total)
	dst = append(dst, packets.PUBLISH<<4|publishFlags(p))
	dst = appendVBI(dst, rem)
	dst = append(dst, byte(len(p.Topic)>>8), byte(len(p.Topic)))
	dst = append(dst, p.Topic...)
	if p.QoS > 0 {
		dst = append(dst, byte(p.PacketID>>8), byte(p.PacketID))
	}
	dst = append(dst, 3, packets.PropTopicAlias, byte(alias>>8), byte(alias))
	dst = append(dst, p.Payload...)
	return dst, nil
}
