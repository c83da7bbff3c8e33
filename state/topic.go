package state

import (
	"errors"
	"fmt"

	"github.com/mqttloop/mqttloop/topic"
)

// Errors for requests that can never be sent. They are returned (wrapped
// with details) before anything goes on the wire.
var (
	// ErrInvalidTopic: a topic name or filter breaks the MQTT rules
	// (topic.ErrInvalidTopic).
	ErrInvalidTopic = topic.ErrInvalidTopic
	// ErrInvalidQoS: a QoS outside 0, 1, 2, or above the broker's maximum.
	ErrInvalidQoS = errors.New("invalid QoS")
)

// ValidateTopicName checks a topic name used in PUBLISH: non-empty, at most
// 65,535 bytes, valid UTF-8 without U+0000, control characters or
// non-characters, and without the wildcards '+' and '#'
// (topic.ValidateName).
func ValidateTopicName(name string) error { return topic.ValidateName(name) }

// ValidateTopicFilter checks a topic filter used in SUBSCRIBE and
// UNSUBSCRIBE: the rules of ValidateTopicName, except that '+' may stand
// for a whole level and '#' for a whole last level. Shared subscriptions
// ($share/group/filter) need a group name without wildcards and a filter
// (topic.ValidateFilter).
func ValidateTopicFilter(filter string) error { return topic.ValidateFilter(filter) }

// ValidateQoS checks that qos is 0, 1 or 2.
func ValidateQoS(qos byte) error {
	if qos > 2 {
		return fmt.Errorf("%w: %d (must be 0, 1 or 2)", ErrInvalidQoS, qos)
	}
	return nil
}
