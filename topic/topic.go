package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mqttloop/mqttloop/internal/mqttstr"
)

// ErrInvalidTopic: a topic name or filter breaks the MQTT rules. Errors of
// ValidateName and ValidateFilter wrap it, with the reason.
var ErrInvalidTopic = errors.New("invalid topic")

// SharePrefix starts a shared subscription filter: "$share/<group>/<filter>".
const SharePrefix = "$share/"

// MaxLen is the longest topic name or filter MQTT can carry, in bytes.
const MaxLen = 65535

// ValidateName checks a topic name used in PUBLISH: non-empty, at most
// 65,535 bytes, valid UTF-8 without U+0000 and without the code points
// MQTT says not to send (control characters, non-characters: brokers such
// as mosquitto refuse them), and without the wildcards '+'
// and '#'.
func ValidateName(topic string) error {
	if err := validateString(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("%w: topic name %q contains a wildcard", ErrInvalidTopic, truncate(topic))
	}
	return nil
}

// ValidateFilter checks a topic filter used in SUBSCRIBE and UNSUBSCRIBE:
// the rules of ValidateName, except that '+' may stand for a whole level
// and '#' for a whole last level. A shared subscription
// ($share/<group>/<filter>) needs a group name without wildcards and a
// filter.
func ValidateFilter(filter string) error {
	if err := validateString(filter); err != nil {
		return err
	}
	rest := filter
	if strings.HasPrefix(filter, SharePrefix) {
		group, f, ok := strings.Cut(filter[len(SharePrefix):], "/")
		if !ok || group == "" || f == "" || strings.ContainsAny(group, "+#") {
			return fmt.Errorf("%w: shared subscription %q needs $share/<group>/<filter>", ErrInvalidTopic, truncate(filter))
		}
		rest = f
	}
	for i := 0; ; {
		level, more := nextLevel(rest, &i)
		switch {
		case strings.Contains(level, "#"):
			if level != "#" || more {
				return fmt.Errorf("%w: in filter %q, '#' must be the whole last level", ErrInvalidTopic, truncate(filter))
			}
		case strings.Contains(level, "+"):
			if level != "+" {
				return fmt.Errorf("%w: in filter %q, '+' must be a whole level", ErrInvalidTopic, truncate(filter))
			}
		}
		if !more {
			return nil
		}
	}
}

// SplitShared splits a shared subscription filter "$share/<group>/<filter>"
// into its group and filter. For any other filter it returns "", filter,
// false. It does not validate: see ValidateFilter.
func SplitShared(filter string) (group, inner string, shared bool) {
	if !strings.HasPrefix(filter, SharePrefix) {
		return "", filter, false
	}
	group, inner, ok := strings.Cut(filter[len(SharePrefix):], "/")
	if !ok {
		return "", filter, false
	}
	return group, inner, true
}

// Match reports whether topic (a topic name) matches filter (a topic
// filter, possibly a shared subscription). An invalid filter or topic
// name matches nothing.
func Match(filter, topic string) bool {
	if ValidateFilter(filter) != nil || ValidateName(topic) != nil {
		return false
	}
	_, f, _ := SplitShared(filter)
	if len(topic) > 0 && topic[0] == '$' && len(f) > 0 && (f[0] == '+' || f[0] == '#') {
		return false
	}
	fi, ti := 0, 0
	for {
		fl, fmore := nextLevel(f, &fi)
		if fl == "#" {
			return true
		}
		tl, tmore := nextLevel(topic, &ti)
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "sport/#" matches "sport": the filter may only go on with #.
			rest, _ := nextLevel(f, &fi)
			return rest == "#" && fi > len(f)
		case !fmore:
			return false
		}
	}
}

// nextLevel returns the level of s starting at *i and advances *i past it
// and its separator; more reports whether another level follows.
func nextLevel(s string, i *int) (level string, more bool) {
	start := *i
	if j := strings.IndexByte(s[start:], '/'); j >= 0 {
		*i = start + j + 1
		return s[start : start+j], true
	}
	*i = len(s) + 1
	return s[start:], false
}

func validateString(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(s) > MaxLen:
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrInvalidTopic, len(s), MaxLen)
	}
	if err := mqttstr.Check(s); err != nil {
		return fmt.Errorf("%w: %q %w", ErrInvalidTopic, truncate(s), err)
	}
	return nil
}

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	// Cut at a rune boundary so the quoted text stays valid UTF-8.
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
