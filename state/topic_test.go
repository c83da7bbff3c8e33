package state

import (
	"errors"
	"strings"
	"testing"
)

// Names and filters valid everywhere (no wildcards).
var validPlainTopics = []string{
	"a",
	"a/b",
	"/",
	"a//b",
	"$SYS/x",
	"sport/tennis/player1",
	"héllo/wörld",
	" ",
	strings.Repeat("a", 65535),       // longest string MQTT can carry
	strings.Repeat("é", 32767) + "a", // 65,535 bytes of multi-byte UTF-8
	"a/" + strings.Repeat("b", 65535-len("a/")), // at the limit with a level
}

// Filters valid only as filters (wildcards, shared subscriptions).
var validWildcardFilters = []string{
	"+",
	"#",
	"a/+/c",
	"a/#",
	"+/+",
	"/+",
	"+/",
	"a/+/#",
	"$share/g/a/#",
	"$share/g/+",
	"$share/g/#",
	"$share/group/a/b",
	"$share/g/a//b",
}

func TestValidateTopicNameValid(t *testing.T) {
	for _, topic := range validPlainTopics {
		if err := ValidateTopicName(topic); err != nil {
			t.Errorf("ValidateTopicName(%.20q [%d bytes]) = %v, want nil", topic, len(topic), err)
		}
	}
}

func TestValidateTopicNameInvalid(t *testing.T) {
	for _, topic := range []string{
		"",
		"a/+",
		"+",
		"#",
		"a/#",
		"a/+/c",
		"a#",
		"a+b",
		"$share/g/a/#",
		"\xff",
		"a/\xc3",
		"a\x00b",
		"\x00",
		strings.Repeat("a", 65536),
		strings.Repeat("é", 32768),
		strings.Repeat("a", 1000) + "/+", // long: the error quotes it truncated
		strings.Repeat("a", 1000) + "\x00",
	} {
		err := ValidateTopicName(topic)
		if err == nil {
			t.Errorf("ValidateTopicName(%.20q [%d bytes]) = nil, want an error", topic, len(topic))
			continue
		}
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopicName(%.20q) = %v, want it to wrap ErrInvalidTopic", topic, err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ValidateTopicName(%d bytes): error message is %d bytes long, want it truncated", len(topic), len(err.Error()))
		}
	}
}

func TestValidateTopicFilterValid(t *testing.T) {
	for _, filter := range append(append([]string(nil), validPlainTopics...), validWildcardFilters...) {
		if err := ValidateTopicFilter(filter); err != nil {
			t.Errorf("ValidateTopicFilter(%.20q [%d bytes]) = %v, want nil", filter, len(filter), err)
		}
	}
}

func TestValidateTopicFilterInvalid(t *testing.T) {
	for _, filter := range []string{
		"",
		"a#",
		"#a",
		"a/#/b",
		"#/",
		"#/a",
		"a/b#",
		"a+",
		"+a",
		"+a/b",
		"a/+b/c",
		"a/b+",
		"++",
		"##",
		"$share/g",
		"$share/g/",
		"$share//a",
		"$share/",
		"$share/g+/a",
		"$share/g#/a",
		"$share/+/a",
		"$share/g/a#",
		"$share/g/#/a",
		"\xff",
		"a\x00b",
		strings.Repeat("a", 65536),
	} {
		err := ValidateTopicFilter(filter)
		if err == nil {
			t.Errorf("ValidateTopicFilter(%.20q) = nil, want an error", filter)
			continue
		}
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopicFilter(%.20q) = %v, want it to wrap ErrInvalidTopic", filter, err)
		}
	}
}

func TestValidateQoS(t *testing.T) {
	for q := 0; q < 256; q++ {
		err := ValidateQoS(byte(q))
		switch {
		case q <= 2 && err != nil:
			t.Errorf("ValidateQoS(%d) = %v, want nil", q, err)
		case q > 2 && !errors.Is(err, ErrInvalidQoS):
			t.Errorf("ValidateQoS(%d) = %v, want an error wrapping ErrInvalidQoS", q, err)
		}
	}
}
