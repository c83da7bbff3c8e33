package reconnect

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

func TestPolicyRetry(t *testing.T) {
	cases := []struct {
		p               Policy
		connectedBefore bool
		want            bool
	}{
		{Never, false, false},
		{Never, true, false},
		{Automatic, false, true},
		{Automatic, true, true},
		{AfterFirstSuccess, false, false},
		{AfterFirstSuccess, true, true},
	}
	for _, c := range cases {
		if got := c.p.Retry(c.connectedBefore); got != c.want {
			t.Errorf("%v.Retry(%v) = %v, want %v", c.p, c.connectedBefore, got, c.want)
		}
	}
	if Policy(7).Valid() || !AfterFirstSuccess.Valid() {
		t.Error("Valid is wrong")
	}
}

func TestScheduleGrowsAndResets(t *testing.T) {
	s := NewSchedule(nil)
	var last time.Duration
	for i := 0; i < 8; i++ {
		d, ok := s.Next()
		if !ok || d <= 0 || d > 45*time.Second {
			t.Fatalf("attempt %d: %v %v", i, d, ok)
		}
		last = d
	}
	if last < time.Second {
		t.Fatalf("delay did not grow: %v after 8 attempts", last)
	}
	s.Reset()
	if d, _ := s.Next(); d > 375*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestScheduleStops(t *testing.T) {
	s := NewSchedule(backoff.WithMaxRetries(&backoff.ConstantBackOff{Interval: time.Second}, 2))
	for i := 0; i < 2; i++ {
		if _, ok := s.Next(); !ok {
			t.Fatalf("stopped early at %d", i)
		}
	}
	if _, ok := s.Next(); ok {
		t.Fatal("did not stop")
	}
}
