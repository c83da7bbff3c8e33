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
	if Policy(7).Valid() || Policy(-1).Valid() || !AfterFirstSuccess.Valid() || !Never.Valid() || !Automatic.Valid() {
		t.Error("Valid is wrong")
	}
	if Policy(0) != AfterFirstSuccess {
		t.Error("the zero Policy is not AfterFirstSuccess")
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

func TestPermanent(t *testing.T) {
	for code := 0; code < 256; code++ {
		want := false
		switch code {
		case 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C:
			want = true
		}
		if got := Permanent(byte(code)); got != want {
			t.Errorf("Permanent(%#02x) = %v, want %v", code, got, want)
		}
	}
}

func TestRotation(t *testing.T) {
	r := NewRotation(3)
	// A round: each server once, the next at once after a failure.
	if got := r.Next(); got != 0 {
		t.Fatalf("first server %d", got)
	}
	if !r.Failed(false) {
		t.Fatal("after the first of three failed, the next should be tried at once")
	}
	if got := r.Next(); got != 1 {
		t.Fatalf("second server %d", got)
	}
	if !r.Failed(false) || r.InRound() != 2 {
		t.Fatalf("second failure: in round %d", r.InRound())
	}
	if got := r.Next(); got != 2 {
		t.Fatalf("third server %d", got)
	}
	if r.Failed(false) {
		t.Fatal("every server failed: the round must end")
	}
	if r.InRound() != 0 {
		t.Fatalf("a new round begins empty, has %d", r.InRound())
	}
	// The next round starts where the last one stopped: server 0 again.
	if got := r.Next(); got != 0 {
		t.Fatalf("next round starts with %d", got)
	}
	// A permanent refusal ends the round at once.
	if r.Failed(true) {
		t.Fatal("a permanent refusal must end the round")
	}
	// A success starts a new round.
	r.Next()
	r.Failed(false)
	r.NewRound()
	if r.InRound() != 0 {
		t.Fatal("NewRound did not reset")
	}
	// One server: never "at once".
	one := NewRotation(1)
	one.Next()
	if one.Failed(false) {
		t.Fatal("with one server the round ends at its first failure")
	}
}
