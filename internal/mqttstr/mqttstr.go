// Package mqttstr holds the one rule for MQTT UTF-8 strings (MQTT 5
// §1.5.4, MQTT 3.1.1 §1.5.3), shared by the topic checks of package state
// and the request and option checks of package eventloop.
package mqttstr

import (
	"fmt"
	"unicode/utf8"
)

// MaxLen is the longest string (and binary data) MQTT can carry: its
// length prefix has two bytes.
const MaxLen = 65535

// Check reports why s cannot be sent as an MQTT UTF-8 string, or nil. It
// refuses what MQTT forbids (more than 65,535 bytes, ill-formed UTF-8,
// surrogates, U+0000) and what MQTT says a sender should not send and a
// receiver may treat as a malformed packet: the control characters
// U+0001-U+001F and U+007F-U+009F and the Unicode non-characters
// (U+FDD0-U+FDEF and the last two code points of every plane). mosquitto
// 2.0 closes the connection on any of them (measured: topic, content
// type, response topic and user properties alike), so a request carrying
// one would fail on some brokers and not on others; it is refused on all.
//
// The error does not quote s (it may be a secret); it names the
// offending code point and its byte offset.
func Check(s string) error {
	if len(s) > MaxLen {
		return fmt.Errorf("%d bytes, at most %d fit in an MQTT string", len(s), MaxLen)
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return fmt.Errorf("not valid UTF-8 (byte %#02x at offset %d)", s[i], i)
			}
		}
		if why := forbidden(r); why != "" {
			return fmt.Errorf("contains %U at offset %d: %s", r, i, why)
		}
	}
	return nil
}

func forbidden(r rune) string {
	switch {
	case r == 0:
		return "MQTT forbids U+0000"
	case r <= 0x1F || r >= 0x7F && r <= 0x9F:
		return "a control character, which brokers may refuse as malformed"
	case r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE:
		return "a Unicode non-character, which brokers may refuse as malformed"
	}
	return ""
}
