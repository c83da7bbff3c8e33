package main

import (
	"strings"
	"testing"
	"time"
)

// TestHistogram: buckets hold their values, and quantiles are within a
// bucket (6 %) of the exact ones.
func TestHistogram(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 31, 32, 1000, 123456789, time.Hour} {
		if b := bucketOf(d); upper(b) < d || (b > 0 && upper(b-1) >= d) {
			t.Fatalf("%v: bucket %d holds up to %v, the one before up to %v", d, b, upper(b), upper(b-1))
		}
	}
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := time.Duration(q*10000) * time.Microsecond
		got := h.quantile(q)
		if got < exact || float64(got) > float64(exact)*1.07 {
			t.Fatalf("q%v: %v, exact %v", q, got, exact)
		}
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 20000 || m.min != time.Microsecond || m.max != 10*time.Millisecond || m.quantile(0.5) != h.quantile(0.5) {
		t.Fatalf("merged: n %d min %v max %v", m.n, m.min, m.max)
	}
	var sb strings.Builder
	h.draw(&sb, 40)
	if !strings.Contains(sb.String(), "█") || strings.Count(sb.String(), "\n") < 5 {
		t.Fatalf("drawing:\n%s", sb.String())
	}
}
