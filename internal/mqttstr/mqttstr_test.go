package mqttstr

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := []string{"", "a/b", "héllo", "日本", "\U0001F600", "\u00a0", "\uFFFD", "\uFDCF", "\uFDF0", "\U0010FFFD", strings.Repeat("x", MaxLen)}
	for _, s := range good {
		if err := Check(s); err != nil {
			t.Errorf("Check(%.20q) = %v, want nil", s, err)
		}
	}
	bad := []string{
		"a\x00b", "\x01", "a\tb", "\n", "\x1f", "\x7f", "\u0080", "\u009f",
		"\uFDD0", "\uFDEF", "\uFFFE", "\uFFFF", "\U0001FFFE", "\U0010FFFF",
		"\xff", "a\xc3", "\xed\xa0\x80", // a surrogate, encoded
		"\xc0\x80", // overlong U+0000
		strings.Repeat("x", MaxLen+1),
	}
	for _, s := range bad {
		if err := Check(s); err == nil {
			t.Errorf("Check(%.20q) = nil, want an error", s)
		}
	}
}
