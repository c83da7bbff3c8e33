package vbi

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, Max} {
		b := Append(nil, n)
		if len(b) != Len(n) {
			t.Errorf("%d: %d bytes, Len says %d", n, len(b), Len(n))
		}
		got, w, err := Parse(b)
		if err != nil || got != n || w != len(b) {
			t.Errorf("%d: Parse(% x) = %d, %d, %v", n, b, got, w, err)
		}
		if _, w, err := Parse(b[:len(b)-1]); w != 0 || err != nil {
			t.Errorf("%d: Parse of a cut encoding = %d, %v; want 0, nil", n, w, err)
		}
	}
}

func TestParseTooLong(t *testing.T) {
	if _, _, err := Parse([]byte{0x80, 0x80, 0x80, 0x80, 0x01}); !errors.Is(err, ErrTooLong) {
		t.Fatalf("five bytes: %v", err)
	}
	// The longest legal encoding of Max is accepted.
	if v, n, err := Parse([]byte{0xFF, 0xFF, 0xFF, 0x7F}); v != Max || n != 4 || err != nil {
		t.Fatalf("Max: %d, %d, %v", v, n, err)
	}
}
