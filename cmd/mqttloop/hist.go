package main

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"strings"
	"time"
)

// histogram counts durations in log-linear buckets: 16 per power of two
// of nanoseconds, so a percentile is exact to within 1/16 (6 %).
type histogram struct {
	counts        [64 * 16]uint64
	n             uint64
	sum, min, max time.Duration
}

const subBuckets = 16

func bucketOf(d time.Duration) int {
	if d < subBuckets {
		if d < 0 {
			d = 0
		}
		return int(d)
	}
	v := uint64(d)
	exp := bits.Len64(v) - 5 // v >> exp is in [16, 32)
	return (exp+1)*subBuckets + int(v>>uint(exp)) - subBuckets
}

// upper is the largest duration in bucket i.
func upper(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	exp := i/subBuckets - 1
	m := uint64(i%subBuckets + subBuckets)
	return time.Duration((m+1)<<uint(exp) - 1)
}

func (h *histogram) record(d time.Duration) {
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
	h.counts[bucketOf(d)]++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// quantile returns the duration below which a fraction q of the values
// lie (the upper bound of its bucket, at most the maximum).
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(upper(i), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// draw prints the histogram as bars in power-of-two rows.
func (h *histogram) draw(w io.Writer, width int) {
	if h.n == 0 {
		return
	}
	type row struct {
		lo, hi time.Duration
		n      uint64
	}
	var rows []row
	for e := 0; e < 64; e++ {
		var n uint64
		for i := e * subBuckets; i < (e+1)*subBuckets; i++ {
			n += h.counts[i]
		}
		lo := time.Duration(0)
		if e > 0 {
			lo = upper(e*subBuckets-1) + 1
		}
		rows = append(rows, row{lo, upper((e+1)*subBuckets - 1), n})
	}
	first, last := -1, -1
	var peak uint64
	for i, r := range rows {
		if r.n > 0 {
			if first < 0 {
				first = i
			}
			last = i
			peak = max(peak, r.n)
		}
	}
	for _, r := range rows[first : last+1] {
		bar := int(float64(r.n) / float64(peak) * float64(width))
		if r.n > 0 && bar == 0 {
			bar = 1
		}
		fmt.Fprintf(w, "  %9s - %-9s %s %d\n", round(r.lo), round(r.hi), strings.Repeat("█", bar), r.n)
	}
}

// round shortens a duration for a table.
func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d >= time.Microsecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.String()
}
