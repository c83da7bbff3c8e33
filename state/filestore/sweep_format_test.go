package filestore

import "testing"

// activeRoot decodes the root Open would choose (without rolling forward).
func activeRoot(data []byte) (root, bool) {
	if len(data) < logStart {
		return root{}, false
	}
	ra, okA := decodeRoot(data[slotA:], slotA)
	rb, okB := decodeRoot(data[slotB:], slotB)
	switch {
	case okA && (!okB || ra.gen > rb.gen):
		return ra, true
	case okB:
		return rb, true
	}
	return root{}, false
}

// liveBytes are the bytes of a store file that hold something: the
// header, the two roots and the committed log.
func liveBytes(t *testing.T, data []byte) []int {
	t.Helper()
	r, ok := activeRoot(data)
	if !ok {
		t.Fatalf("the intact store has no valid root")
	}
	var live []int
	add := func(from, to int64) {
		for i := from; i < to; i++ {
			live = append(live, int(i))
		}
	}
	add(0, headerSize)
	add(slotA, slotA+rootSize)
	add(slotB, slotB+rootSize)
	add(r.start, r.end)
	return live
}

// truncationHarmless: cutting the file at n or later leaves the committed
// log whole.
func truncationHarmless(data []byte, n int) bool {
	r, _ := activeRoot(data)
	return int64(n) >= r.end
}
