// Package vbi is MQTT's variable byte integer (MQTT 5 §1.5.5, 3.1.1
// §2.2.3): the remaining length of every packet, property lengths and
// Subscription Identifiers. It is the one copy of the encoding in the
// module, shared by the codec (internal/wire) and the pure session
// (state), which must not import the codec.
package vbi

import "errors"

// Max is the largest value a variable byte integer can hold: 268,435,455
// (four bytes).
const Max = 268_435_455

// ErrTooLong means an encoding continues beyond four bytes.
var ErrTooLong = errors.New("variable byte integer longer than 4 bytes")

// Len returns the number of bytes of n (0 <= n <= Max) as a variable byte
// integer.
func Len(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	default:
		return 4
	}
}

// Append appends n (0 <= n <= Max) as a variable byte integer.
func Append(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// Parse reads a variable byte integer from the start of b and returns it
// and its length in bytes. When b ends before the integer does it returns
// n == 0 and a nil error; when the integer is longer than four bytes,
// ErrTooLong.
func Parse(b []byte) (val, n int, err error) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, nil
		}
		val |= int(b[i]&0x7F) << (7 * i)
		if b[i] < 0x80 {
			return val, i + 1, nil
		}
	}
	return 0, 0, ErrTooLong
}
