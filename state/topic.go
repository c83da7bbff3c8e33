package state

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors for requests that can never be sent. They are returned (wrapped
// with details) before anything goes on the wire.
var (
	// ErrInvalidTopic: a topic name or filter breaks the MQTT rules.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrInvalidQoS: a QoS outside 0, 1, 2, or above the broker's maximum.
	ErrInvalidQoS = errors.New("invalid QoS")
)

// maxStringLen is the longest UTF-8 string MQTT can carry (2-byte length).
const maxStringLen = 65535

// ValidateTopicName checks a topic name used in PUBLISH: non-empty, at most
// 65,535 bytes, valid UTF-8 without U+0000, and without the wildcards '+'
// and '#'.
func ValidateTopicName(topic string) error {
	if err := validateString(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: topic name %q contains a wildcard", ErrInvalidTopic, truncate(topic))
	}
	return nil
}

// ValidateTopicFilter checks a topic filter used in SUBSCRIBE and
// UNSUBSCRIBE: the rules of ValidateTopicName, except that '+' may stand
// for a whole level and '#' for a whole last level. Shared subscriptions
// ($share/group/filter) need a group name without wildcards and a filter.
func ValidateTopicFilter(filter string) error {
	if err := validateString(filter); err != nil {
		return err
	}
	rest := filter
	if strings.HasPrefix(filter, "$share/") {
		group, f, ok := strings.Cut(strings.TrimPrefix(filter, "$share/"), "/")
		if !ok || group == "" || f == "" || strings.ContainsAny(group, "+#") {
			return fmt.Errorf("%w: shared subscription %q needs $share/<group>/<filter>", ErrInvalidTopic, truncate(filter))
		}
		rest = f
	}
	levels := strings.Split(rest, "/")
	for i, level := range levels {
		switch {
		case strings.Contains(level, "#"):
			if level != "#" || i != len(levels)-1 {
				return fmt.Errorf("%w: in filter %q, '#' must be the whole last level", ErrInvalidTopic, truncate(filter))
			}
		case strings.Contains(level, "+"):
			if level != "+" {
				return fmt.Errorf("%w: in filter %q, '+' must be a whole level", ErrInvalidTopic, truncate(filter))
			}
		}
	}
	return nil
}

// ValidateQoS checks that qos is 0, 1 or 2.
func ValidateQoS(qos byte) error {
	if qos > 2 {
		return fmt.Errorf("%w: %d (must be 0, 1 or 2)", ErrInvalidQoS, qos)
	}
	return nil
}

func validateString(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > maxStringLen:
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrInvalidTopic, len(s), maxStringLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTopic, truncate(s))
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%w: %q contains U+0000", ErrInvalidTopic, truncate(s))
	}
	return nil
}

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
